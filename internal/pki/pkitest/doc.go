// Package pkitest makes the certificates tests need: a short-lived CA, a
// server certificate for 127.0.0.1 and node client certificates issued
// through the same CSR path edgecore uses. It is imported only by tests.
package pkitest
