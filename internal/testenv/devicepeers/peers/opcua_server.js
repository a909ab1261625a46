// node-opcua test peer for the mapper tests (after the recipe in
// shared/recipes/device-peers, extended with security and users).
//   node opcua_server.js PORT PKI_DIR
// Endpoints: SecurityPolicy None and Basic256Sha256 with modes None, Sign,
// SignAndEncrypt; client certificates are accepted automatically. Users:
// anonymous, and "operator"/"s3cret". Variables (ns=1):
//   Temperature Double, read-only, changing slowly
//   Setpoint    Int32, read-write
//   Name        String, read-only
//   Counter     UInt16, read-write (increments every 200 ms until written)
//   Flag        Boolean, read-write
// Prints READY <endpoint> when serving.
const path = require("path");
const { OPCUAServer, Variant, DataType, StatusCodes, SecurityPolicy, MessageSecurityMode, OPCUACertificateManager } = require("node-opcua");
(async () => {
  const port = parseInt(process.argv[2] || "4840", 10);
  const pki = process.argv[3] || path.join(process.cwd(), "pki");
  const serverCertificateManager = new OPCUACertificateManager({ rootFolder: path.join(pki, "server"), automaticallyAcceptUnknownCertificate: true });
  await serverCertificateManager.initialize();
  const userCertificateManager = new OPCUACertificateManager({ rootFolder: path.join(pki, "user"), automaticallyAcceptUnknownCertificate: true });
  await userCertificateManager.initialize();
  const server = new OPCUAServer({
    port, hostname: "127.0.0.1", resourcePath: "/",
    buildInfo: { productName: "kubeedge-go-opcua-peer", buildNumber: "1", buildDate: new Date() },
    serverCertificateManager, userCertificateManager,
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    userManager: { isValidUser: (user, password) => user === "operator" && password === "s3cret" },
  });
  await server.initialize();
  const ns = server.engine.addressSpace.getOwnNamespace();
  const dev = ns.addObject({ organizedBy: server.engine.addressSpace.rootFolder.objects, browseName: "Device1" });
  let setpoint = 10, counter = 0, flag = false, counting = true;
  const t0 = Date.now();
  ns.addVariable({ componentOf: dev, browseName: "Temperature", nodeId: "ns=1;s=Temperature", dataType: "Double",
    accessLevel: "CurrentRead", userAccessLevel: "CurrentRead", minimumSamplingInterval: 100,
    value: { get: () => new Variant({ dataType: DataType.Double, value: 21.5 + (Date.now() - t0) / 1e6 }) } });
  ns.addVariable({ componentOf: dev, browseName: "Setpoint", nodeId: "ns=1;s=Setpoint", dataType: "Int32",
    accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
    value: { get: () => new Variant({ dataType: DataType.Int32, value: setpoint }),
             set: (v) => { setpoint = v.value; return StatusCodes.Good; } } });
  ns.addVariable({ componentOf: dev, browseName: "Name", nodeId: "ns=1;s=Name", dataType: "String",
    accessLevel: "CurrentRead", userAccessLevel: "CurrentRead",
    value: { get: () => new Variant({ dataType: DataType.String, value: "pump-1" }) } });
  const counterVar = ns.addVariable({ componentOf: dev, browseName: "Counter", nodeId: "ns=1;s=Counter", dataType: "UInt16",
    accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite", minimumSamplingInterval: 50,
    value: { get: () => new Variant({ dataType: DataType.UInt16, value: counter }),
             set: (v) => { counter = v.value; counting = false; return StatusCodes.Good; } } });
  ns.addVariable({ componentOf: dev, browseName: "Flag", nodeId: "ns=1;s=Flag", dataType: "Boolean",
    accessLevel: "CurrentRead | CurrentWrite", userAccessLevel: "CurrentRead | CurrentWrite",
    value: { get: () => new Variant({ dataType: DataType.Boolean, value: flag }),
             set: (v) => { flag = v.value; return StatusCodes.Good; } } });
  const timer = setInterval(() => { if (counting) { counter = (counter + 1) % 65536; counterVar.touchValue(); } }, 200);
  await server.start();
  console.log("READY", server.getEndpointUrl());
  const stop = async () => { clearInterval(timer); await server.shutdown(100); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
})().catch((err) => { console.error("opcua peer failed:", err); process.exit(1); });
