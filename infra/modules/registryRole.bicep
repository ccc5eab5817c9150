// One role on one existing container registry, for the app's identity. Deployed as a module
// scoped to the registry's resource group, so registries in other groups and subscriptions work
// (the deploying user needs Owner or User Access Administrator there).

@description('Name of the registry (the last segment of its resource ID).')
param registryName string

param principalId string

@description('Role definition GUID: AcrPush, AcrPull, Reader, ...')
param roleDefinitionId string

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = {
  name: registryName
}

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: registry
  name: guid(registry.id, principalId, roleDefinitionId)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleDefinitionId)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output loginServer string = registry.properties.loginServer
