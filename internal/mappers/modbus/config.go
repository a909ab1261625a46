package modbus

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

// RegisterType is a visitor's register kind (KubeEdge's names).
type RegisterType string

// The register kinds.
const (
	Coil          RegisterType = "CoilRegister"
	DiscreteInput RegisterType = "DiscreteInputRegister"
	Holding       RegisterType = "HoldingRegister"
	Input         RegisterType = "InputRegister"
)

// ErrReadOnly: a write to a register kind Modbus cannot write.
var ErrReadOnly = errors.New("modbus: register kind is read-only")

// protocolConfig is a device's parsed protocol configData.
type protocolConfig struct {
	rtu     bool
	ip      string
	port    int
	serial  string
	baud    int
	data    int
	parity  string // "N", "E", "O"
	stop    int
	slaveID int
	timeout time.Duration
}

// parseProtocol reads a device's protocol configData.
func parseProtocol(d mapper.DeviceSpec) (protocolConfig, error) {
	c := convert.NewConfig("protocol configData", d.ConfigData)
	var p protocolConfig
	hasIP, hasSerial := c.Has("ip"), c.Has("serialPort")
	switch {
	case hasIP && hasSerial:
		c.Errorf("ip", fmt.Errorf("%w: give ip (Modbus TCP) or serialPort (Modbus RTU), not both", convert.ErrOutOfRange))
	case hasIP:
		p.ip = c.String("ip", convert.Required)
		p.port = int(c.Int("port", convert.Required, 1, 65535))
		if p.ip == "" {
			c.Errorf("ip", fmt.Errorf("%w: empty", convert.ErrOutOfRange))
		}
	case hasSerial:
		p.rtu = true
		p.serial = c.String("serialPort", convert.Required)
		p.baud = int(c.IntDefault("baudRate", 19200, 50, 4000000))
		p.data = int(c.IntDefault("dataBits", 8, 5, 8))
		p.stop = int(c.IntDefault("stopBits", 1, 1, 2))
		p.parity = "N"
		if c.Has("parity") {
			switch s := strings.ToLower(c.String("parity", convert.Optional)); s {
			case "n", "none":
				p.parity = "N"
			case "e", "even":
				p.parity = "E"
			case "o", "odd":
				p.parity = "O"
			default:
				c.Errorf("parity", fmt.Errorf("%w: %q (want none, even or odd)", convert.ErrOutOfRange, s))
			}
		}
		if p.serial == "" {
			c.Errorf("serialPort", fmt.Errorf("%w: empty", convert.ErrOutOfRange))
		}
	default:
		c.Errorf("ip", fmt.Errorf("%w: give ip and port (Modbus TCP) or serialPort (Modbus RTU)", convert.ErrMissingKey))
	}
	p.slaveID = int(c.IntDefault("slaveID", 1, 0, 255))
	p.timeout = time.Duration(c.IntDefault("timeout", 1000, 1, 600000)) * time.Millisecond
	return p, c.Err()
}

// visitor is a property's parsed visitor configData.
type visitor struct {
	register     RegisterType
	offset       uint16
	limit        uint16
	scale        float64
	swapBytes    bool
	swapRegister bool
	signed       bool
	typ          convert.Type
}

func (v visitor) String() string {
	return fmt.Sprintf("%s offset %d limit %d", v.register, v.offset, v.limit)
}

// parseVisitor reads a property's visitor configData and checks it fits the
// property's type.
func parseVisitor(p mapper.PropertySpec) (visitor, error) {
	c := convert.NewConfig(fmt.Sprintf("visitor configData of property %q", p.Name), p.VisitorConfig)
	v := visitor{typ: p.Type}
	v.register = RegisterType(c.OneOf("register", convert.Required, string(Coil), string(DiscreteInput), string(Holding), string(Input)))
	v.offset = uint16(c.Int("offset", convert.Required, 0, 65535))
	maxLimit := int64(125) // registers per read request
	if v.register == Coil || v.register == DiscreteInput {
		maxLimit = 64 // bits packed into an INT
	}
	v.limit = uint16(c.IntDefault("limit", 1, 1, maxLimit))
	v.scale = c.FloatDefault("scale", 1)
	if v.scale == 0 {
		c.Errorf("scale", fmt.Errorf("%w: scale must not be 0", convert.ErrOutOfRange))
	}
	v.swapBytes = c.BoolDefault("isSwap", false)
	v.swapRegister = c.BoolDefault("isRegisterSwap", false)
	v.signed = c.BoolDefault("signed", false)
	if err := c.Err(); err != nil {
		return visitor{}, err
	}
	if int(v.offset)+int(v.limit) > 65536 {
		return visitor{}, fmt.Errorf("visitor of property %q: offset %d + limit %d passes the last address 65535: %w", p.Name, v.offset, v.limit, convert.ErrOutOfRange)
	}
	if err := v.checkType(); err != nil {
		return visitor{}, fmt.Errorf("visitor of property %q: %w", p.Name, err)
	}
	return v, nil
}

// checkType rejects type/limit combinations that cannot be decoded.
func (v visitor) checkType() error {
	bits := v.register == Coil || v.register == DiscreteInput
	switch v.typ {
	case convert.TypeBoolean:
		if v.limit != 1 {
			return fmt.Errorf("%w: a BOOLEAN property needs limit 1, got %d", convert.ErrOutOfRange, v.limit)
		}
	case convert.TypeInt:
		if !bits && v.limit != 1 && v.limit != 2 && v.limit != 4 {
			return fmt.Errorf("%w: an INT property needs limit 1, 2 or 4 registers, got %d", convert.ErrOutOfRange, v.limit)
		}
	case convert.TypeFloat, convert.TypeDouble:
		if bits {
			return fmt.Errorf("%w: a %s property cannot be read from %s", convert.ErrWrongType, v.typ, v.register)
		}
		if v.limit != 1 && v.limit != 2 && v.limit != 4 {
			return fmt.Errorf("%w: a %s property needs limit 1 (integer), 2 (float32) or 4 (float64), got %d", convert.ErrOutOfRange, v.typ, v.limit)
		}
	case convert.TypeString, convert.TypeBytes:
		if bits {
			return fmt.Errorf("%w: a %s property cannot be read from %s", convert.ErrWrongType, v.typ, v.register)
		}
	case convert.TypeStream:
		return fmt.Errorf("%w: STREAM properties are not supported by Modbus", convert.ErrWrongType)
	default:
		return fmt.Errorf("%w: %q", convert.ErrUnknownType, string(v.typ))
	}
	return nil
}
