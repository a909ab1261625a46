package convert

import "errors"

var (
	// ErrMissingKey: a required configData key is absent.
	ErrMissingKey = errors.New("convert: missing key")
	// ErrUnknownKey: a configData key that the protocol does not define.
	ErrUnknownKey = errors.New("convert: unknown key")
	// ErrWrongType: a value of the wrong kind (a string where a number is
	// expected, an unsupported Any type...).
	ErrWrongType = errors.New("convert: wrong type")
	// ErrOutOfRange: a number outside what the key or property allows.
	ErrOutOfRange = errors.New("convert: out of range")
	// ErrSyntax: a string that does not parse as the property's type.
	ErrSyntax = errors.New("convert: invalid syntax")
	// ErrUnknownType: a property type that is not one of the CRD's.
	ErrUnknownType = errors.New("convert: unknown property type")
)
