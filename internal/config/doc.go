// Package config holds what the cloudcore and edgecore configurations share:
// strict YAML loading that names unknown fields, and error collection for
// Validate methods.
package config
