export { ProxyServer, type ProxyAddresses, type ProxyServerDeps } from './server.js';
export type { ProxyListener, ProxyResult } from './tls-proxy.js';
export { readClientHello, type ClientHelloInfo, type ClientHelloResult } from './tls/client-hello.js';
