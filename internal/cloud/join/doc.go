// Package join is cloudcore's HTTPS bootstrap endpoint (KubeEdge's :10002):
// it hands out the CA certificate and signs node client certificates for
// edges that present a join token, or, to renew, their current certificate.
package join
