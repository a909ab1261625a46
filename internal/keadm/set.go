package keadm

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// applySets applies KubeEdge's `--set key=value` settings to cfg, a pointer
// to a configuration struct: each key is a dotted path of JSON field names
// that must exist (modules.edged.cgroupRoot; a map field takes one more
// element, modules.edged.nodeLabels.zone), and each value is parsed as the
// field's type (bool, number, string, or a list of strings separated by
// ';'). An unknown key or a value of the wrong type is an error naming it;
// cfg is changed only when every setting is valid.
func applySets(cfg any, sets []string) error {
	if len(sets) == 0 {
		return nil
	}
	// Work on a copy so that a bad setting leaves cfg as it was.
	raw, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	work := reflect.New(reflect.TypeOf(cfg).Elem())
	if err := json.Unmarshal(raw, work.Interface()); err != nil {
		return err
	}
	for _, s := range sets {
		key, val, ok := strings.Cut(s, "=")
		if !ok || key == "" {
			return fmt.Errorf("--set %q: want key=value", s)
		}
		if err := setField(work.Elem(), strings.Split(key, "."), val); err != nil {
			return fmt.Errorf("--set %s: %w", key, err)
		}
	}
	reflect.ValueOf(cfg).Elem().Set(work.Elem())
	return nil
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}

func setField(v reflect.Value, path []string, val string) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		return setField(v.Elem(), path, val)
	case reflect.Struct:
		if len(path) == 0 {
			return fmt.Errorf("is a section; set one of its fields")
		}
		for i := 0; i < v.NumField(); i++ {
			if f := v.Type().Field(i); f.IsExported() && jsonName(f) == path[0] {
				return setField(v.Field(i), path[1:], val)
			}
		}
		return fmt.Errorf("no field %q", path[0])
	case reflect.Map:
		if len(path) != 1 || v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("a map takes exactly one more key (e.g. .zone=a)")
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		v.SetMapIndex(reflect.ValueOf(path[0]), reflect.ValueOf(val))
		return nil
	}
	if len(path) != 0 {
		return fmt.Errorf("no field %q", path[0])
	}
	switch v.Kind() {
	case reflect.Bool:
		b, err := strconv.ParseBool(val)
		if err != nil {
			return fmt.Errorf("%q is not true or false", val)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(val, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a whole number", val)
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(val, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a non-negative whole number", val)
		}
		v.SetUint(n)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(val, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not a number", val)
		}
		v.SetFloat(f)
	case reflect.String:
		v.SetString(val)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("a list of %s cannot be set from the command line", v.Type().Elem())
		}
		var list []string
		for _, s := range strings.Split(val, ";") {
			if s != "" {
				list = append(list, s)
			}
		}
		v.Set(reflect.ValueOf(list))
	default:
		return fmt.Errorf("a %s cannot be set from the command line", v.Type())
	}
	return nil
}
