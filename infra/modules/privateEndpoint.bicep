// One private endpoint for one sub-resource (groupId) of a resource, registered in a private DNS zone.

param location string
param name string
param subnetId string

@description('Resource ID of the target (storage account, Key Vault, container registry).')
param targetId string

@description('blob | queue | table | vault | registry')
param groupId string

param dnsZoneId string
param tags object = {}

resource endpoint 'Microsoft.Network/privateEndpoints@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: { id: subnetId }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: targetId
          groupIds: [ groupId ]
        }
      }
    ]
  }
}

resource dns 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      { name: groupId, properties: { privateDnsZoneId: dnsZoneId } }
    ]
  }
}
