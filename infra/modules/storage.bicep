// The app's storage account: the Functions host's own state (AzureWebJobsStorage), the import
// queue (+ poison queue), the job table, and the blob container Flex Consumption deploys from.
// Shared keys are off: everything, host included, authenticates with the managed identity.

param location string

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Queue the import jobs go through (IMPORT_QUEUE); the host adds "<name>-poison".')
param queueName string

@description('Table of job records (IMPORT_JOBS_TABLE).')
param jobsTableName string

@description('Blob container Flex Consumption deploys the app package from.')
param deploymentContainerName string

@description('Reachable only through private endpoints (set when the VNet is on).')
param privateOnly bool = false

param tags object = {}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    allowSharedKeyAccess: false // identity-based connections only (AzureWebJobsStorage__accountName)
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: privateOnly ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateOnly ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// Created up front so the first message and the first poisoned one need no create permission race.
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queue in [
  queueName
  '${queueName}-poison'
]: {
  parent: queueService
  name: queue
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource jobsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: jobsTableName
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
