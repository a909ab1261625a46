// Package opcua is the OPC-UA driver for the mapper SDK, on
// github.com/gopcua/opcua: reads, writes and subscription-based collection,
// security policy None or Basic256Sha256 (modes Sign, SignAndEncrypt) with
// client certificates, anonymous or username/password sessions.
//
// Protocol configData: url (required, opc.tcp://host:port/path),
// securityPolicy (None | Basic256Sha256 | Basic256 | Basic128Rsa15 |
// Aes128_Sha256_RsaOaep | Aes256_Sha256_RsaPss; default None), securityMode
// (None | Sign | SignAndEncrypt; default None, and required to be Sign or
// SignAndEncrypt when the policy is not None), certFile and keyFile (PEM or
// DER client certificate and RSA key; required with a policy other than
// None; KubeEdge's spellings certificate/privateKey are accepted too),
// username and password (both or neither; userName is accepted too),
// timeout (milliseconds per request, default 5000).
//
// Visitor configData: nodeID (required, e.g. ns=1;s=Temperature or
// ns=2;i=42), subscribe (bool, default false: poll every collectCycle; true:
// a monitored item reports changes), samplingInterval (milliseconds, for
// subscriptions, default 100).
//
// Status codes of single nodes (BadNotWritable, BadNodeIdUnknown,
// BadTypeMismatch, BadUserAccessDenied...) are errors of that property; a
// failed service call, a closed secure channel or session, or a server
// that went away marks the device disconnected and the SDK reconnects with
// a new session and new subscriptions.
package opcua
