export { DnsServer, dohResolverNames, type DnsAddresses, type DnsServerDeps } from './server.js';
export { explainResolution, type Resolution } from './explain.js';
export { UpstreamPool } from './upstream.js';
export type { DnsClient, DnsResult, DnsTransport, PolicyView } from './chain.js';
export type { UpstreamAnswer, UpstreamHealth, UpstreamQuestion, UpstreamResolver } from './upstream-types.js';
export { createAddressResolver, type AddressResolver } from './address-resolver.js';
