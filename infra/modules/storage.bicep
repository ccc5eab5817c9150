// The app's storage account: the Functions host's own state (AzureWebJobsStorage), the import
// queue (+ poison queue), the job table, and the blob container Flex Consumption deploys from.
// Shared keys are off: everything, host included, authenticates with the managed identity.
// With the VNet the firewall denies everything but trusted Azure services and allowedIpRanges; the
// app itself goes through the private endpoints (main.bicep).

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

@description('Firewall on (set when the VNet is on): the app reaches the account through its private endpoints; the public endpoint answers only trusted Azure services (the platform writing the deployment package) and allowedIpRanges.')
param restrictNetwork bool = false

@description('With restrictNetwork: public IPv4 addresses or CIDR ranges also allowed through the firewall (e.g. a build agent that uploads the package blob itself).')
param allowedIpRanges array = []

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
    // Not 'Disabled', even with the VNet: that would also shut out the trusted services, and the
    // platform could no longer write the package of a deployment (az functionapp deployment source
    // config-zip / One Deploy) into the deployment container, which it does from outside the VNet.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: restrictNetwork ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
      ipRules: [for ipRange in (restrictNetwork ? allowedIpRanges : []): { value: ipRange, action: 'Allow' }]
      virtualNetworkRules: []
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
