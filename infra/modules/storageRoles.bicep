// The app identity's data-plane roles on its storage account:
//   Storage Queue Data Contributor  - the import queue and its poison queue (send, receive, delete)
//   Storage Table Data Contributor  - the job table
//   Storage Blob Data Owner         - the Functions host's blobs (leases, keys) and the Flex
//                                     deployment container the platform reads the package from

param storageAccountName string
param principalId string

var roles = [
  '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource assignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for role in roles: {
  scope: account
  name: guid(account.id, principalId, role)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}]
