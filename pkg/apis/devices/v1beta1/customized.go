package v1beta1

import (
	"encoding/json"
	"fmt"
)

// CustomizedValue is free-form protocol configuration: any JSON object.
// It marshals as the bare object, as in KubeEdge.
//
// +k8s:deepcopy-gen=false
type CustomizedValue struct {
	Data map[string]any `json:"-"`
}

// MarshalJSON implements json.Marshaler.
func (in CustomizedValue) MarshalJSON() ([]byte, error) {
	if in.Data == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(in.Data)
}

// UnmarshalJSON implements json.Unmarshaler; anything but an object (or
// null) is an error naming what was found.
func (in *CustomizedValue) UnmarshalJSON(b []byte) error {
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("configData must be a JSON object: %w", err)
	}
	in.Data = out
	return nil
}

// DeepCopyInto copies in into out. Values are what encoding/json produces
// (maps, slices, strings, float64, bool, nil), or int64/int32/int from code;
// they are copied structurally, without a JSON round trip that could fail.
func (in *CustomizedValue) DeepCopyInto(out *CustomizedValue) {
	if in.Data == nil {
		out.Data = nil
		return
	}
	out.Data = copyJSONMap(in.Data)
}

// DeepCopy returns a deep copy of in.
func (in *CustomizedValue) DeepCopy() *CustomizedValue {
	if in == nil {
		return nil
	}
	out := new(CustomizedValue)
	in.DeepCopyInto(out)
	return out
}

func copyJSONMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = copyJSONValue(v)
	}
	return out
}

func copyJSONValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return copyJSONMap(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = copyJSONValue(e)
		}
		return out
	default:
		// Scalars (string, bool, numbers, json.Number, nil) are immutable.
		return v
	}
}
