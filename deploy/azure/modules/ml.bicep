// Azure ML: the workspace with what it requires (its own storage account, Key Vault, Application
// Insights over Log Analytics, the container registry the scoring Environment and the host image
// are built into) and the scoring cluster: min 0 nodes, idle PT10M, system-assigned identity.

@description('Name prefix.')
param name string

@description('Region.')
param location string

@description('The workspace storage account (Azure ML keeps its own files there; bscore does not).')
param storageName string

@description('Container registry name (globally unique, 5-50 letters and digits).')
param registryName string

@description('Key Vault name (globally unique, 3-24 characters).')
param keyVaultName string

@description('VM size of the cluster.')
param clusterVmSize string

@description('Most nodes of the cluster.')
param clusterMaxNodes int

@description('Principal id of the Dagster host identity.')
param hostPrincipalId string

var clusterName = '${name}-cpu'
var dataScientist = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'f6c7c914-8db3-469d-8ca1-694a8f32e121')
var acrPull = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '7f951dda-4ed3-4680-a7ca-43fe172d538d')

resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: '${name}-logs'
  location: location
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${name}-insights'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }
}

resource workspaceStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' = {
  name: registryName
  location: location
  sku: {
    name: 'Basic'
  }
  properties: {
    adminUserEnabled: false
  }
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2025-12-01' = {
  name: '${name}-ml'
  location: location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    friendlyName: '${name} scoring'
    storageAccount: workspaceStorage.id
    keyVault: vault.id
    applicationInsights: insights.id
    containerRegistry: registry.id
    publicNetworkAccess: 'Enabled'
  }
}

resource cluster 'Microsoft.MachineLearningServices/workspaces/computes@2025-12-01' = {
  parent: workspace
  name: clusterName
  location: location
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    computeType: 'AmlCompute'
    properties: {
      vmSize: clusterVmSize
      vmPriority: 'Dedicated'
      osType: 'Linux'
      remoteLoginPortPublicAccess: 'Disabled'
      scaleSettings: {
        minNodeCount: 0
        maxNodeCount: clusterMaxNodes
        nodeIdleTimeBeforeScaleDown: 'PT10M'
      }
    }
  }
}

// The host submits, watches and cancels the scoring jobs.
resource hostDataScientist 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, hostPrincipalId, dataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: dataScientist
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The host pulls its own image; the cluster pulls the scoring image (the registry has no admin user).
resource hostAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, hostPrincipalId, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: acrPull
    principalId: hostPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource clusterAcrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(registry.id, cluster.id, acrPull)
  scope: registry
  properties: {
    roleDefinitionId: acrPull
    principalId: cluster.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

output workspaceName string = workspace.name
output clusterName string = cluster.name
output clusterPrincipalId string = cluster.identity.principalId
output registryName string = registry.name
output registryServer string = registry.properties.loginServer
output logAnalyticsName string = logs.name
