// Optional private networking: a VNet with
//   - an integration subnet delegated to Microsoft.App/environments (what Flex Consumption requires),
//   - a subnet for private endpoints (storage, Key Vault, optionally the target registry),
//   - a NAT gateway so the app still reaches public source registries (docker.io, mcr, ghcr, ...):
//     new subnets have no default outbound internet access,
//   - private DNS zones linked to the VNet, so *.blob/queue/table.core.windows.net, *.vault.azure.net
//     and *.azurecr.io resolve to the private endpoints from inside.

param location string
param name string
param addressPrefix string
param integrationSubnetPrefix string
param privateEndpointSubnetPrefix string

@description('Give the integration subnet a NAT gateway (outbound internet for public registries).')
param natGateway bool = true

param tags object = {}

var zoneNames = [
  'privatelink.blob.${environment().suffixes.storage}'
  'privatelink.queue.${environment().suffixes.storage}'
  'privatelink.table.${environment().suffixes.storage}'
  'privatelink.vaultcore.azure.net'
  'privatelink.azurecr.io'
]

resource natIp 'Microsoft.Network/publicIPAddresses@2023-11-01' = if (natGateway) {
  name: 'pip-nat-${name}'
  location: location
  tags: tags
  sku: { name: 'Standard' }
  properties: { publicIPAllocationMethod: 'Static' }
}

resource nat 'Microsoft.Network/natGateways@2023-11-01' = if (natGateway) {
  name: 'nat-${name}'
  location: location
  tags: tags
  sku: { name: 'Standard' }
  properties: {
    idleTimeoutInMinutes: 10
    publicIpAddresses: [ { id: natIp.id } ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: [ addressPrefix ] }
    subnets: [
      {
        name: 'snet-functions'
        properties: {
          addressPrefix: integrationSubnetPrefix
          delegations: [
            { name: 'flex', properties: { serviceName: 'Microsoft.App/environments' } }
          ]
          natGateway: natGateway ? { id: nat.id } : null
        }
      }
      {
        name: 'snet-private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for zone in zoneNames: {
  name: zone
  location: 'global'
  tags: tags
}]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (zone, i) in zoneNames: {
  parent: zones[i]
  name: 'link-${name}'
  location: 'global'
  properties: {
    registrationEnabled: false
    virtualNetwork: { id: vnet.id }
  }
}]

output integrationSubnetId string = vnet.properties.subnets[0].id
output privateEndpointSubnetId string = vnet.properties.subnets[1].id
@description('Private DNS zone IDs by private endpoint group: blob, queue, table, vault, registry.')
output zoneIds object = {
  blob: zones[0].id
  queue: zones[1].id
  table: zones[2].id
  vault: zones[3].id
  registry: zones[4].id
}
