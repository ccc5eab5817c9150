// Key Vault for the app's secrets, read through Key Vault references in app settings
// (@Microsoft.KeyVault(VaultName=...;SecretName=...)). RBAC mode: the app's identity gets
// "Key Vault Secrets User" on this vault and nothing else.
//
// Secrets are written only when a value is passed: a redeploy without one leaves the stored secret
// as it is (for import-credential-key, the Fernet key of IMPORT_CREDENTIAL_KEY, that keeps the
// credentials sealed in queued job records readable).
//
// Soft delete and purge protection are on, and the name is derived from the resource group: after
// `az group delete` the name stays taken by the deleted vault for softDeleteRetentionInDays, and a
// new deployment into a group of the same name fails ("already exists in deleted state"). Deploy
// with createMode 'recover' (main.bicep: keyVaultCreateMode) to take that vault back, or change the
// names with main.bicep's nameSalt.

param location string

@description('Key Vault name: 3-24 letters, digits and hyphens, globally unique.')
param name string

@description('Object id of the app identity that reads the secrets.')
param readerPrincipalId string

@secure()
@description('Secrets to write, secret name -> value; an empty value leaves that secret as it is.')
param secrets object = {}

@description('Reachable only through a private endpoint (set when the VNet is on).')
param privateOnly bool = false

@description('default: create (or update) the vault. recover: bring back a soft-deleted vault of this name (after the resource group was deleted, purge protection keeps it for the retention period), with its secrets.')
@allowed([ 'default', 'recover' ])
param createMode string = 'default'

param tags object = {}

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    createMode: createMode
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 30
    enablePurgeProtection: true
    publicNetworkAccess: privateOnly ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateOnly ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource written 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for secret in items(secrets): if (!empty(secret.value)) {
  parent: vault
  name: secret.key
  properties: { value: secret.value }
}]

resource readSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: vault
  name: guid(vault.id, readerPrincipalId, keyVaultSecretsUser)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output id string = vault.id
output name string = vault.name
