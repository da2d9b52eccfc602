// Command localplugin is the local provider as an external plugin
// (k2-provider-local) for the installer's tests, with one setting more: a
// secret "token", as cloud providers have, that must be 12 characters or
// more, and only the settings the tests fill in (stateDir, network,
// runtime). It logs the configuration it is asked to validate — carelessly, as
// a plugin might — so the tests can see that the installer masks secrets
// in the log pane as well as on screen. The machines are the local
// provider's own.
package main

import (
	"context"
	"encoding/json"

	"k2.dev/k2/providers/local"
	"k2.dev/k2/providers/sdk"
)

func main() { sdk.Serve(func() sdk.Provider { return &provider{local.New()} }) }

type provider struct{ sdk.Provider }

func (p *provider) Describe(ctx context.Context, req *sdk.DescribeRequest) (*sdk.DescribeResponse, error) {
	d, err := p.Provider.Describe(ctx, req)
	if err != nil {
		return nil, err
	}
	// The settings the tests fill in, in this order, whatever settings the
	// local provider gains.
	var schema []sdk.ConfigField
	for _, f := range d.ConfigSchema {
		if f.Name == "stateDir" || f.Name == "network" || f.Name == "runtime" {
			schema = append(schema, f)
		}
	}
	d.ConfigSchema = append(schema, sdk.ConfigField{Name: "token", Type: sdk.TypeString, Secret: true,
		Description: "API token (12 characters or more)"})
	return d, nil
}

// split takes the token out of the config the local provider reads.
func split(c sdk.Config) (sdk.Config, string) {
	m := map[string]any{}
	if len(c) > 0 && json.Unmarshal(c, &m) != nil {
		return c, ""
	}
	tok, _ := m["token"].(string)
	delete(m, "token")
	b, _ := json.Marshal(m)
	return b, tok
}

func (p *provider) Validate(ctx context.Context, req *sdk.ValidateRequest) (*sdk.ValidateResponse, error) {
	sdk.Logger().Info("validating settings", "config", string(req.Config))
	cfg, tok := split(req.Config)
	r := *req
	r.Config = cfg
	resp, err := p.Provider.Validate(ctx, &r)
	if err == nil && tok != "" && len(tok) < 12 {
		resp.Diagnostics.Errorf("config.token", "the token is %d characters; tokens have 12 or more", len(tok))
	}
	return resp, err
}

func (p *provider) Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error) {
	r := *req
	r.Config, _ = split(req.Config)
	return p.Provider.Create(ctx, &r)
}

func (p *provider) List(ctx context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error) {
	r := *req
	r.Config, _ = split(req.Config)
	return p.Provider.List(ctx, &r)
}

func (p *provider) Delete(ctx context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error) {
	r := *req
	r.Config, _ = split(req.Config)
	return p.Provider.Delete(ctx, &r)
}
