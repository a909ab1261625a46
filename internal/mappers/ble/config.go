package ble

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

var (
	macRE     = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)
	uuidRE    = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	short16RE = regexp.MustCompile(`^[0-9a-f]{4}$`)
	adapterRE = regexp.MustCompile(`^hci[0-9]{1,3}$`)
)

type protocolConfig struct {
	mac     string
	adapter string
	timeout time.Duration
}

func parseProtocol(d mapper.DeviceSpec) (protocolConfig, error) {
	c := convert.NewConfig("protocol configData", d.ConfigData)
	p := protocolConfig{
		mac:     strings.ToUpper(c.String("macAddress", convert.Required)),
		adapter: c.StringDefault("adapter", "hci0"),
		timeout: time.Duration(c.IntDefault("timeout", 10000, 1, 600000)) * time.Millisecond,
	}
	if p.mac != "" && !macRE.MatchString(p.mac) {
		c.Errorf("macAddress", fmt.Errorf("%w: %q is not a MAC address like AA:BB:CC:DD:EE:FF", convert.ErrSyntax, p.mac))
	}
	if !adapterRE.MatchString(p.adapter) {
		c.Errorf("adapter", fmt.Errorf("%w: %q is not an adapter name like hci0", convert.ErrSyntax, p.adapter))
	}
	return p, c.Err()
}

// normUUID accepts full UUIDs and 16-bit short forms (2a6e or 0x2A6E),
// returning BlueZ's lower-case full form.
func normUUID(s string) (string, bool) {
	s = strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"))
	if short16RE.MatchString(s) {
		return "0000" + s + "-0000-1000-8000-00805f9b34fb", true
	}
	return s, uuidRE.MatchString(s)
}

type visitor struct {
	char, service string
	notify        bool
	command       bool // write without response
	codec         codec
}

func (v *visitor) String() string { return "characteristic " + v.char }

func parseVisitor(p mapper.PropertySpec) (*visitor, error) {
	c := convert.NewConfig(fmt.Sprintf("visitor configData of property %q", p.Name), p.VisitorConfig)
	v := &visitor{}
	if s := c.String("characteristicUUID", convert.Required); s != "" {
		u, ok := normUUID(s)
		if !ok {
			c.Errorf("characteristicUUID", fmt.Errorf("%w: %q is not a UUID", convert.ErrSyntax, s))
		}
		v.char = u
	}
	if c.Has("serviceUUID") {
		s := c.String("serviceUUID", convert.Optional)
		u, ok := normUUID(s)
		if !ok {
			c.Errorf("serviceUUID", fmt.Errorf("%w: %q is not a UUID", convert.ErrSyntax, s))
		}
		v.service = u
	}
	v.notify = c.BoolDefault("notify", false)
	v.command = c.OneOf("writeType", convert.Optional, "request", "command") == "command"
	name := c.StringDefault("dataFormat", defaultFormat(p.Type))
	f, ok := formats[name]
	if !ok {
		c.Errorf("dataFormat", fmt.Errorf("%w: %q is not a known format (raw, utf8, uint8, int16le, float32le...)", convert.ErrOutOfRange, name))
	}
	v.codec = codec{f: f, typ: p.Type, offset: int(c.IntDefault("offset", 0, 0, 512)), scale: c.FloatDefault("scale", 1)}
	if v.codec.scale == 0 {
		c.Errorf("scale", fmt.Errorf("%w: scale must not be 0", convert.ErrOutOfRange))
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	switch {
	case p.Type == convert.TypeStream:
		return nil, fmt.Errorf("visitor of property %q: %w: STREAM properties are not supported over GATT", p.Name, convert.ErrWrongType)
	case (p.Type == convert.TypeBytes || p.Type == convert.TypeString) && f.name != "raw" && f.name != "utf8":
		return nil, fmt.Errorf("visitor of property %q: %w: a %s property needs dataFormat raw or utf8", p.Name, convert.ErrWrongType, p.Type)
	case (p.Type != convert.TypeBytes && p.Type != convert.TypeString) && (f.name == "raw" || f.name == "utf8"):
		return nil, fmt.Errorf("visitor of property %q: %w: a %s property needs a numeric dataFormat", p.Name, convert.ErrWrongType, p.Type)
	case p.Type == convert.TypeBoolean && f.float:
		return nil, fmt.Errorf("visitor of property %q: %w: a BOOLEAN property needs an integer dataFormat", p.Name, convert.ErrWrongType)
	}
	return v, nil
}
