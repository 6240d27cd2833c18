// The databases, both signed in to with Microsoft Entra only (no SQL login, no password exists):
// Azure SQL for bscore's tables (its Entra administrator creates a database user per identity,
// docs/azure.md "SQL with managed identity"), and Azure Database for PostgreSQL for the Dagster
// instance, administered by the host identity itself, which is the only one that uses it.

@description('Name prefix.')
param name string

@description('Region.')
param location string

@description('Azure SQL server name (globally unique).')
param sqlServerName string

@description('Display name of the Entra administrator of the Azure SQL server.')
param sqlAdminLogin string

@description('Object id of that administrator.')
param sqlAdminObjectId string

@description('User, Group or Application.')
param sqlAdminPrincipalType string

@description('Database service objective.')
param sqlDatabaseSku string

@description('PostgreSQL flexible server name for the Dagster instance (globally unique).')
param dagsterServerName string

@description('Display name of the Dagster host identity (its PostgreSQL role).')
param hostIdentityName string

@description('Principal id of the Dagster host identity.')
param hostPrincipalId string

var databaseName = name
var dagsterDatabaseName = 'dagster'

resource server 'Microsoft.Sql/servers@2021-11-01' = {
  name: sqlServerName
  location: location
  properties: {
    minimalTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    administrators: {
      administratorType: 'ActiveDirectory'
      azureADOnlyAuthentication: true
      login: sqlAdminLogin
      sid: sqlAdminObjectId
      principalType: sqlAdminPrincipalType
      tenantId: subscription().tenantId
    }
  }
}

// 0.0.0.0 admits Azure services only (the host, the cluster, Stream Analytics), not the internet.
resource sqlAzureServices 'Microsoft.Sql/servers/firewallRules@2021-11-01' = {
  parent: server
  name: 'AllowAllWindowsAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource database 'Microsoft.Sql/servers/databases@2021-11-01' = {
  parent: server
  name: databaseName
  location: location
  sku: {
    name: sqlDatabaseSku
  }
}

resource dagsterServer 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: dagsterServerName
  location: location
  sku: {
    name: 'Standard_B1ms'
    tier: 'Burstable'
  }
  properties: {
    version: '16'
    storage: {
      storageSizeGB: 32
    }
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
  }
}

resource dagsterAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: dagsterServer
  name: hostPrincipalId
  properties: {
    principalName: hostIdentityName
    principalType: 'ServicePrincipal'
    tenantId: subscription().tenantId
  }
}

resource dagsterAzureServices 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: dagsterServer
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [
    dagsterAdmin
  ]
}

resource dagsterDatabase 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: dagsterServer
  name: dagsterDatabaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
  dependsOn: [
    dagsterAzureServices
  ]
}

output serverName string = server.name
output serverFqdn string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
output dagsterServerFqdn string = dagsterServer.properties.fullyQualifiedDomainName
output dagsterDatabaseName string = dagsterDatabase.name
