// All app settings of the Function App, as one Microsoft.Web/sites/config 'appsettings' resource:
// a setting not listed in main.bicep's appSettings is removed. Deployed last (after the role
// assignments, the Key Vault secrets and, with the VNet, the private endpoints and their DNS
// records) so the host's first start finds its storage reachable and the Key Vault references resolve.

param siteName string

@description('App settings, name -> value (strings).')
param appSettings object

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: siteName
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: appSettings
}

