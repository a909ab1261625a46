// Package certs keeps cloudcore's key material in the cluster: the CA in
// secret kubeedge/casecret, the server certificate in kubeedge/cloudcoresecret
// and the current join token in kubeedge/tokensecret.
//
// Secrets are created with create-or-get and never overwritten, so replicas
// that start together agree on one CA: every process first Gets, and if the
// secret is absent generates material and Creates it; the loser of a Create
// race gets AlreadyExists and reads the winner's data.
package certs
