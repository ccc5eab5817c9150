// Log Analytics workspace + workspace-based Application Insights.
// The Functions host sends its logs here; importcore adds spans and counters through
// azure-monitor-opentelemetry when APPLICATIONINSIGHTS_CONNECTION_STRING is set (importcore/telemetry.py).
// With disableLocalAuth the instrumentation key alone is refused: the host then authenticates with
// APPLICATIONINSIGHTS_AUTHENTICATION_STRING (main.bicep) as an identity holding Monitoring Metrics
// Publisher on this component.

@description('Azure region.')
param location string

@description('Base name for the resources.')
param name string

@description('Turn off key-based ingestion (local auth): telemetry is then accepted only with an Entra token of an identity holding Monitoring Metrics Publisher.')
param disableLocalAuth bool = false

@description('Object id of the identity that sends telemetry with Entra ID; "" = none.')
param metricsPublisherPrincipalId string = ''

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
    DisableLocalAuth: disableLocalAuth
  }
}

var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(metricsPublisherPrincipalId)) {
  scope: appInsights
  name: guid(appInsights.id, metricsPublisherPrincipalId, monitoringMetricsPublisher)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: metricsPublisherPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output connectionString string = appInsights.properties.ConnectionString
output appInsightsName string = appInsights.name
