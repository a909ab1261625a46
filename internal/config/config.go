package config

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// Load reads a YAML (or JSON) file into out, which the caller has already
// defaulted; fields the file omits keep their defaults. Unknown fields are an
// error that names them.
func Load(path string, out any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

// Marshal renders a configuration as YAML.
func Marshal(v any) ([]byte, error) {
	b, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return b, nil
}

// Errors collects validation problems, each naming its field.
type Errors []string

// Addf records a problem with field.
func (e *Errors) Addf(field, format string, args ...any) {
	*e = append(*e, field+": "+fmt.Sprintf(format, args...))
}

// Err returns nil or one error listing every problem.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return errors.New("invalid configuration:\n  " + strings.Join(e, "\n  "))
}

// CheckPort records a problem unless 0 < port < 65536.
func (e *Errors) CheckPort(field string, port int) {
	if port <= 0 || port > 65535 {
		e.Addf(field, "port %d is out of range 1-65535", port)
	}
}

// CheckPositive records a problem unless v > 0.
func (e *Errors) CheckPositive(field string, v int64) {
	if v <= 0 {
		e.Addf(field, "must be greater than 0, got %d", v)
	}
}
