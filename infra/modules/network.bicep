// Optional private networking: a VNet with
//   - an integration subnet delegated to Microsoft.App/environments (what Flex Consumption requires),
//   - a subnet for private endpoints (storage, Key Vault, optionally the target registry),
//   - a NAT gateway so the app still reaches public source registries (docker.io, mcr, ghcr, ...):
//     new subnets have no default outbound internet access,
//   - private DNS zones linked to the VNet, so the storage, Key Vault and (when asked for) registry
//     names resolve to the private endpoints from inside.
//
// Zone names come from environment(), so the same template works in the sovereign clouds.
// Every link falls back to public DNS for a name its zone does not hold (resolutionPolicy
// NxDomainRedirect): a registry or storage account with a private endpoint in some other network
// has a CNAME into privatelink.* but no record in our zone, and would otherwise answer NXDOMAIN here.

param location string
param name string
param addressPrefix string
param integrationSubnetPrefix string
param privateEndpointSubnetPrefix string

@description('Give the integration subnet a NAT gateway (outbound internet for public registries).')
param natGateway bool = true

@description('Also the container registry zone (privatelink.azurecr.io in the public cloud): only needed when a registry gets a private endpoint in this VNet.')
param registryDnsZone bool = false

param tags object = {}

var storageSuffix = environment().suffixes.storage // core.windows.net
var zoneNames = [
  'privatelink.blob.${storageSuffix}'
  'privatelink.queue.${storageSuffix}'
  'privatelink.table.${storageSuffix}'
  // .vault.azure.net -> privatelink.vaultcore.azure.net
  'privatelink${replace(environment().suffixes.keyvaultDns, '.vault.', '.vaultcore.')}'
]
// .azurecr.io -> privatelink.azurecr.io
var registryZoneName = 'privatelink${environment().suffixes.acrLoginServer}'

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

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for zone in zoneNames: {
  name: zone
  location: 'global'
  tags: tags
}]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (zone, i) in zoneNames: {
  parent: zones[i]
  name: 'link-${name}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    resolutionPolicy: 'NxDomainRedirect'
    virtualNetwork: { id: vnet.id }
  }
}]

resource registryZone 'Microsoft.Network/privateDnsZones@2024-06-01' = if (registryDnsZone) {
  name: registryZoneName
  location: 'global'
  tags: tags
}

resource registryLink 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = if (registryDnsZone) {
  parent: registryZone
  name: 'link-${name}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    resolutionPolicy: 'NxDomainRedirect'
    virtualNetwork: { id: vnet.id }
  }
}

output integrationSubnetId string = vnet.properties.subnets[0].id
output privateEndpointSubnetId string = vnet.properties.subnets[1].id
@description('Private DNS zone IDs by private endpoint group: blob, queue, table, vault, registry ("" without registryDnsZone).')
output zoneIds object = {
  blob: zones[0].id
  queue: zones[1].id
  table: zones[2].id
  vault: zones[3].id
  registry: registryDnsZone ? registryZone.id : ''
}
