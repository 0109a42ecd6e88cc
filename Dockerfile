# Build: docker build -t portcullis .
# Run:   docker run -p 53:53/udp -p 53:53/tcp -p 443:443 -p 80:80 -p 9090:9090 \
#          -v portcullis-data:/var/lib/portcullis -v ./portcullis.yaml:/etc/portcullis/portcullis.yaml:ro portcullis
# Transparent mode: --network host --cap-add NET_ADMIN (see deploy/nftables/).
FROM node:20-bookworm-slim AS build
# The transparent-mode addon (native/transparent.c) is compiled by node-gyp during npm ci.
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json binding.gyp ./
COPY native ./native
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY ui ./ui
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
# nft(8) for nftables.apply (transparent deployments load the IP layer into the kernel).
RUN apt-get update && apt-get install -y --no-install-recommends nftables && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production
WORKDIR /opt/portcullis
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/build/Release/portcullis_native.node ./build/Release/
COPY blocklists ./blocklists
RUN mkdir -p /var/lib/portcullis /etc/portcullis && chown node:node /var/lib/portcullis
USER node
EXPOSE 53/udp 53/tcp 80 443 9090
VOLUME ["/var/lib/portcullis"]
HEALTHCHECK --interval=30s --timeout=3s CMD ["node", "-e", "fetch('http://127.0.0.1:9090/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "/opt/portcullis/dist/cli.js", "start", "--config", "/etc/portcullis/portcullis.yaml"]
