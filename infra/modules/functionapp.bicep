// The Function App on Flex Consumption (Linux, Python 3.11) running function_app.py.
//
// The app settings are written by appsettings.bicep, after the identity has its roles and the Key
// Vault secret exists (a system-assigned identity only exists once this site does).
// Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION /
// WEBSITE_RUN_FROM_PACKAGE as app settings: runtime and version are functionAppConfig.runtime.

param location string
param name string

@description('UserAssigned (identityId/identityClientId given) or SystemAssigned.')
@allowed([ 'UserAssigned', 'SystemAssigned' ])
param identityType string

@description('Resource ID of the user-assigned identity ("" for SystemAssigned).')
param identityId string = ''

@description('Blob container URL the platform deploys the app package from.')
param deploymentContainerUrl string

@description('Integration subnet ID ("" = no VNet integration).')
param subnetId string = ''

@description('Upper bound on instances; each runs up to batchSize imports (host.json).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance: 512, 2048 or 4096 MB.')
@allowed([ 512, 2048, 4096 ])
param instanceMemoryMB int = 2048

param tags object = {}

var userAssigned = identityType == 'UserAssigned'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${name}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true } // Linux
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: userAssigned ? {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  } : {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references resolve with this identity (default: the system-assigned one).
    keyVaultReferenceIdentity: userAssigned ? identityId : 'SystemAssigned'
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: userAssigned ? {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          } : {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output principalId string = userAssigned ? '' : site.identity.principalId
