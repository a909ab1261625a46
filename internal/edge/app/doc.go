// Package app wires edgecore: certificates, the local store, MetaManager and
// EdgeHub in one typed struct, run together under an errgroup.
package app
