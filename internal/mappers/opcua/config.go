package opcua

import (
	"fmt"
	"net/url"
	"time"

	"github.com/gopcua/opcua/ua"

	"github.com/kubeedge-go/kubeedge/pkg/apis/dmi/v1beta1/convert"
	"github.com/kubeedge-go/kubeedge/pkg/mapper"
)

// policies maps the config names to policy URIs.
var policies = map[string]string{
	"None":                  ua.SecurityPolicyURINone,
	"Basic256Sha256":        ua.SecurityPolicyURIBasic256Sha256,
	"Basic256":              ua.SecurityPolicyURIBasic256,
	"Basic128Rsa15":         ua.SecurityPolicyURIBasic128Rsa15,
	"Aes128_Sha256_RsaOaep": ua.SecurityPolicyURIAes128Sha256RsaOaep,
	"Aes256_Sha256_RsaPss":  ua.SecurityPolicyURIAes256Sha256RsaPss,
}

var modes = map[string]ua.MessageSecurityMode{
	"None":           ua.MessageSecurityModeNone,
	"Sign":           ua.MessageSecurityModeSign,
	"SignAndEncrypt": ua.MessageSecurityModeSignAndEncrypt,
}

type protocolConfig struct {
	url        string
	policyName string
	policy     string
	mode       ua.MessageSecurityMode
	modeName   string
	certFile   string
	keyFile    string
	username   string
	password   string
	timeout    time.Duration
}

func parseProtocol(d mapper.DeviceSpec) (protocolConfig, error) {
	c := convert.NewConfig("protocol configData", d.ConfigData)
	var p protocolConfig
	p.url = c.String("url", convert.Required)
	if p.url != "" {
		u, err := url.Parse(p.url)
		if err != nil || u.Scheme != "opc.tcp" || u.Host == "" {
			c.Errorf("url", fmt.Errorf("%w: %q is not an opc.tcp://host:port URL", convert.ErrOutOfRange, p.url))
		}
	}
	p.policyName = c.StringDefault("securityPolicy", "None")
	if uri, ok := policies[p.policyName]; ok {
		p.policy = uri
	} else {
		c.Errorf("securityPolicy", fmt.Errorf("%w: %q (want None, Basic256Sha256, Basic256, Basic128Rsa15, Aes128_Sha256_RsaOaep or Aes256_Sha256_RsaPss)", convert.ErrOutOfRange, p.policyName))
	}
	p.modeName = c.StringDefault("securityMode", "None")
	if m, ok := modes[p.modeName]; ok {
		p.mode = m
	} else {
		c.Errorf("securityMode", fmt.Errorf("%w: %q (want None, Sign or SignAndEncrypt)", convert.ErrOutOfRange, p.modeName))
	}
	p.certFile = alias(c, "certFile", "certificate")
	p.keyFile = alias(c, "keyFile", "privateKey")
	p.username = alias(c, "username", "userName")
	p.password = c.StringDefault("password", "")
	p.timeout = time.Duration(c.IntDefault("timeout", 5000, 1, 600000)) * time.Millisecond
	if err := c.Err(); err != nil {
		return protocolConfig{}, err
	}
	secure := p.policyName != "None"
	switch {
	case secure && p.mode == ua.MessageSecurityModeNone:
		return protocolConfig{}, fmt.Errorf("protocol configData key \"securityMode\": %w: securityPolicy %s needs Sign or SignAndEncrypt", convert.ErrOutOfRange, p.policyName)
	case !secure && p.mode != ua.MessageSecurityModeNone:
		return protocolConfig{}, fmt.Errorf("protocol configData key \"securityPolicy\": %w: securityMode %s needs a securityPolicy other than None", convert.ErrOutOfRange, p.modeName)
	case secure && (p.certFile == "" || p.keyFile == ""):
		return protocolConfig{}, fmt.Errorf("protocol configData key \"certFile\": %w: securityPolicy %s needs certFile and keyFile", convert.ErrMissingKey, p.policyName)
	case (p.username == "") != (p.password == ""):
		return protocolConfig{}, fmt.Errorf("protocol configData key \"password\": %w: username and password go together", convert.ErrMissingKey)
	}
	return p, nil
}

// alias reads key, or KubeEdge's spelling old when key is absent.
func alias(c *convert.Config, key, old string) string {
	if c.Has(key) {
		c.Known(old)
		if c.Has(old) {
			c.Errorf(old, fmt.Errorf("%w: give %s or %s, not both", convert.ErrOutOfRange, key, old))
		}
		return c.String(key, convert.Optional)
	}
	return c.StringDefault(old, "")
}

type visitor struct {
	nodeID    *ua.NodeID
	raw       string
	subscribe bool
	sampling  time.Duration
	typ       convert.Type
}

func (v *visitor) String() string { return "node " + v.raw }

func parseVisitor(p mapper.PropertySpec) (*visitor, error) {
	c := convert.NewConfig(fmt.Sprintf("visitor configData of property %q", p.Name), p.VisitorConfig)
	v := &visitor{typ: p.Type}
	v.raw = c.String("nodeID", convert.Required)
	v.subscribe = c.BoolDefault("subscribe", false)
	v.sampling = time.Duration(c.IntDefault("samplingInterval", 100, 0, 3600000)) * time.Millisecond
	if v.raw != "" {
		id, err := ua.ParseNodeID(v.raw)
		if err != nil {
			c.Errorf("nodeID", fmt.Errorf("%w: %q: %v", convert.ErrSyntax, v.raw, err))
		}
		v.nodeID = id
	}
	if err := c.Err(); err != nil {
		return nil, err
	}
	if p.Type == convert.TypeStream {
		return nil, fmt.Errorf("visitor of property %q: %w: STREAM properties are not supported by OPC-UA", p.Name, convert.ErrWrongType)
	}
	return v, nil
}
