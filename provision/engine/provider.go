package engine

import (
	"context"

	"k2.dev/k2/providers/sdk"
)

// Describer is the part of a provider the plan needs.
type Describer interface {
	Describe(ctx context.Context, req *sdk.DescribeRequest) (*sdk.DescribeResponse, error)
}

// Provider is what the engine needs of a provider plugin. cmd injects it:
// *host.Client (a launched plugin) implements it, as does any sdk.Provider.
type Provider interface {
	Describer
	Create(ctx context.Context, req *sdk.CreateRequest) (*sdk.CreateResponse, error)
	Delete(ctx context.Context, req *sdk.DeleteRequest) (*sdk.DeleteResponse, error)
	List(ctx context.Context, req *sdk.ListRequest) (*sdk.ListResponse, error)
}

var _ Provider = (sdk.Provider)(nil)
