// Package pki holds the certificate authority, node certificate signing and
// join token logic shared by cloudcore and edgecore.
//
// Keys are ECDSA P-256 and private keys are stored as SEC 1 DER ("EC PRIVATE
// KEY" in PEM), the encoding KubeEdge uses for its CA key, so a casecret
// written by KubeEdge loads here and the other way round. The package has no
// Kubernetes dependencies: edgecore links it.
package pki
