export { ProxyServer, type ProxyAddresses, type ProxyServerDeps } from './server.js';
export { PROXY_LISTENERS, PROXY_RESULTS, type ProxyListener, type ProxyResult } from './events.js';
export { readClientHello, type ClientHelloInfo, type ClientHelloResult } from './inspect/client-hello.js';
