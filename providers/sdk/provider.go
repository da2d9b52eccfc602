package sdk

import (
	"context"
	"errors"
)

// Provider is what a plugin implements. Every call gets a ctx with a
// deadline set by k2; honour its cancellation.
type Provider interface {
	// Describe returns the provider's name, capabilities and config schema.
	// req.Host says what k2 can do (bootstrap methods it can produce...).
	Describe(ctx context.Context, req *DescribeRequest) (*DescribeResponse, error)
	// Validate checks a config and machine requests without side effects.
	Validate(ctx context.Context, req *ValidateRequest) (*ValidateResponse, error)
	// Create makes the requested machines and boots them with the bootstrap
	// payload. Report progress with req.Report. Idempotent by req.RequestID.
	Create(ctx context.Context, req *CreateRequest) (*CreateResponse, error)
	// List returns the machines this provider manages under the config,
	// optionally only those of one request.
	List(ctx context.Context, req *ListRequest) (*ListResponse, error)
	// Delete removes machines; deleting a missing machine is not an error.
	Delete(ctx context.Context, req *DeleteRequest) (*DeleteResponse, error)
	// Power switches a machine on or off (only with Capabilities.Power).
	Power(ctx context.Context, req *PowerRequest) (*PowerResponse, error)
	// Console streams a machine's console or log to req.Output (only with
	// Capabilities.Console).
	Console(ctx context.Context, req *ConsoleRequest) error

	mustEmbedUnimplementedProvider()
}

// ErrUnimplemented is returned by UnimplementedProvider's methods. k2 treats
// it as "this provider does not offer that call", never as a crash.
var ErrUnimplemented = errors.New("not implemented by this provider")

// UnimplementedProvider must be embedded by every Provider; its methods
// return ErrUnimplemented, so new calls added to the protocol never break an
// existing plugin.
type UnimplementedProvider struct{}

// Describe returns codes.Unimplemented.
func (UnimplementedProvider) Describe(context.Context, *DescribeRequest) (*DescribeResponse, error) {
	return nil, ErrUnimplemented
}

// Validate returns codes.Unimplemented.
func (UnimplementedProvider) Validate(context.Context, *ValidateRequest) (*ValidateResponse, error) {
	return nil, ErrUnimplemented
}

// Create returns codes.Unimplemented.
func (UnimplementedProvider) Create(context.Context, *CreateRequest) (*CreateResponse, error) {
	return nil, ErrUnimplemented
}

// List returns codes.Unimplemented.
func (UnimplementedProvider) List(context.Context, *ListRequest) (*ListResponse, error) {
	return nil, ErrUnimplemented
}

// Delete returns codes.Unimplemented.
func (UnimplementedProvider) Delete(context.Context, *DeleteRequest) (*DeleteResponse, error) {
	return nil, ErrUnimplemented
}

// Power returns codes.Unimplemented.
func (UnimplementedProvider) Power(context.Context, *PowerRequest) (*PowerResponse, error) {
	return nil, ErrUnimplemented
}

// Console returns codes.Unimplemented.
func (UnimplementedProvider) Console(context.Context, *ConsoleRequest) error {
	return ErrUnimplemented
}

func (UnimplementedProvider) mustEmbedUnimplementedProvider() {}
