// Package convert converts DMI values between their three forms:
//
//   - google.protobuf.Any holding a wrapper type (StringValue, Int32Value,
//     Int64Value, UInt32Value, UInt64Value, FloatValue, DoubleValue,
//     BoolValue, BytesValue), the form of protocol and visitor configData on
//     the DMI wire;
//   - plain Go values (string, bool, int64, uint64, float64, []byte), what
//     drivers read and write;
//   - the strings of the Device CRD's twins (reported/desired values), whose
//     syntax depends on the model property's type (INT, FLOAT, DOUBLE,
//     STRING, BOOLEAN, BYTES, STREAM).
//
// KubeEdge's edgecore turns every JSON number of a configData map into a
// FloatValue (float32), so a port of 502 arrives as 502.0; readers here
// accept any numeric wrapper for an integer key as long as the value is
// integral and in range, and float32 values are widened through their
// shortest decimal form (0.1f becomes 0.1, not 0.10000000149011612).
//
// Every error wraps one of the sentinel errors (ErrMissingKey,
// ErrUnknownKey, ErrWrongType, ErrOutOfRange, ErrSyntax, ErrUnknownType)
// and names the key or type it is about.
package convert
