// The Function App on Flex Consumption (Linux, Python 3.11) running function_app.py.
//
// The app settings are written by appsettings.bicep, after the identity has its roles and the Key
// Vault secret exists (a system-assigned identity only exists once this site does).
// Flex Consumption rejects FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION /
// WEBSITE_RUN_FROM_PACKAGE as app settings: runtime and version are functionAppConfig.runtime.
// It also rejects most siteConfig properties of other plans (ftpsState, use32BitWorkerProcess,
// alwaysOn, ...): FTP is switched off here with the basic publishing credentials policies instead.

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

@description('Client (application) id of the Entra app registration callers get tokens for; "" = no App Service Authentication.')
param apiAuthClientId string = ''

@description('Token audiences accepted besides the client id itself, e.g. api://<client-id>.')
param apiAuthAudiences array = []

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

// No publishing user name and password: deployments (az functionapp deployment source config-zip,
// the One Deploy endpoint) then authenticate with the deployer's Entra ID token, and FTP is closed.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: { allow: false }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: { allow: false }
}

// App Service Authentication ("Easy Auth") with Microsoft Entra ID, for the ARM-compatible import
// route that Azure SDK clients call with a bearer token. It validates a token when one is sent and
// passes its principal on in X-MS-CLIENT-PRINCIPAL-* headers; requests without one still reach the
// app (function keys, webhooks, Event Grid), which refuses them on the routes that need a principal.
resource auth 'Microsoft.Web/sites/config@2024-04-01' = if (!empty(apiAuthClientId)) {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: { enabled: true }
    globalValidation: {
      requireAuthentication: false
      unauthenticatedClientAction: 'AllowAnonymous'
    }
    httpSettings: {
      requireHttps: true
      forwardProxy: { convention: 'NoProxy' }
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: apiAuthClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          // v2.0 access tokens carry the client id as their audience, v1.0 tokens the identifier URI
          allowedAudiences: union([ apiAuthClientId ], apiAuthAudiences)
        }
      }
    }
    login: {
      tokenStore: { enabled: false }
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output principalId string = userAssigned ? '' : site.identity.principalId
