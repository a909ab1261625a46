// Package app wires cloudcore: one typed struct holds every component, built
// in New and run together under an errgroup in Run.
package app
