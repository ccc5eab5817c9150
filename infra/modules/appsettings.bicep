// All app settings of the Function App, as one Microsoft.Web/sites/config 'appsettings' resource:
// a setting not listed in main.bicep's appSettings is removed. Deployed last (after the role
// assignments and the Key Vault secret) so the host's first start finds its storage roles and the
// Key Vault reference resolves.

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

