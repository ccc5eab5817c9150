// Log Analytics workspace + workspace-based Application Insights.
// The Functions host sends its logs here; importcore adds spans and counters through
// azure-monitor-opentelemetry when APPLICATIONINSIGHTS_CONNECTION_STRING is set (importcore/telemetry.py).

@description('Azure region.')
param location string

@description('Base name for the resources.')
param name string

@description('Days to keep logs.')
@minValue(30)
param retentionInDays int = 30

param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
  }
}

output connectionString string = appInsights.properties.ConnectionString
output appInsightsName string = appInsights.name
