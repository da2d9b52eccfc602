package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "k2.dev/k2/providers/sdk/internal/proto"
)

// grpcClient is k2's side of the wire: a Provider that forwards every call
// to a plugin. Transport failures come back as Go errors; codes.Unimplemented
// becomes ErrUnimplemented.
type grpcClient struct {
	UnimplementedProvider
	c pb.ProviderClient
}

var _ Provider = (*grpcClient)(nil)

// fromStatus maps a gRPC status back to a Go error.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unimplemented:
		return fmt.Errorf("%s: %w", st.Message(), ErrUnimplemented)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: %w", st.Message(), context.DeadlineExceeded)
	case codes.Canceled:
		return fmt.Errorf("%s: %w", st.Message(), context.Canceled)
	case codes.Unavailable:
		return &TransportError{Err: errors.New(st.Message())}
	}
	return errors.New(st.Message())
}

// TransportError means the connection to the plugin broke (it crashed, was
// killed, or closed the connection) rather than the plugin returning an error.
type TransportError struct{ Err error }

func (e *TransportError) Error() string { return "connection to plugin lost: " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

func (c *grpcClient) Describe(ctx context.Context, req *DescribeRequest) (*DescribeResponse, error) {
	resp, err := c.c.Describe(ctx, &pb.DescribeRequest{Host: hostToPB(req.Host)})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &DescribeResponse{Name: resp.Name, Description: resp.Description, Capabilities: capsFromPB(resp.Capabilities), ConfigSchema: schemaFromPB(resp.ConfigSchema)}, nil
}

func (c *grpcClient) Validate(ctx context.Context, req *ValidateRequest) (*ValidateResponse, error) {
	resp, err := c.c.Validate(ctx, &pb.ValidateRequest{Config: req.Config, Machines: machineReqsToPB(req.Machines), Bootstrap: bootstrapToPB(req.Bootstrap)})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &ValidateResponse{Diagnostics: diagsFromPB(resp.Diagnostics)}, nil
}

func (c *grpcClient) Create(ctx context.Context, req *CreateRequest) (*CreateResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	b := req.Bootstrap
	stream, err := c.c.Create(ctx, &pb.CreateRequest{RequestId: req.RequestID, Config: req.Config, Machines: machineReqsToPB(req.Machines), Bootstrap: bootstrapToPB(&b)})
	if err != nil {
		return nil, fromStatus(err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, &TransportError{Err: errors.New("the plugin ended Create without a result")}
		}
		if err != nil {
			return nil, fromStatus(err)
		}
		if p := ev.Progress; p != nil && req.OnProgress != nil {
			req.OnProgress(Progress{Machine: p.Machine, Message: p.Message, Percent: p.Percent})
		}
		if r := ev.Result; r != nil {
			return &CreateResponse{Machines: machinesFromPB(r.Machines), Diagnostics: diagsFromPB(r.Diagnostics), Kubeconfig: r.Kubeconfig}, nil
		}
	}
}

func (c *grpcClient) List(ctx context.Context, req *ListRequest) (*ListResponse, error) {
	resp, err := c.c.List(ctx, &pb.ListRequest{Config: req.Config, RequestId: req.RequestID})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &ListResponse{Machines: machinesFromPB(resp.Machines), Diagnostics: diagsFromPB(resp.Diagnostics)}, nil
}

func (c *grpcClient) Delete(ctx context.Context, req *DeleteRequest) (*DeleteResponse, error) {
	resp, err := c.c.Delete(ctx, &pb.DeleteRequest{RequestId: req.RequestID, Config: req.Config, MachineIds: req.MachineIDs})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &DeleteResponse{Deleted: resp.Deleted, Diagnostics: diagsFromPB(resp.Diagnostics)}, nil
}

func (c *grpcClient) Power(ctx context.Context, req *PowerRequest) (*PowerResponse, error) {
	resp, err := c.c.Power(ctx, &pb.PowerRequest{Config: req.Config, MachineId: req.MachineID, Action: req.Action})
	if err != nil {
		return nil, fromStatus(err)
	}
	return &PowerResponse{State: resp.State, Diagnostics: diagsFromPB(resp.Diagnostics)}, nil
}

func (c *grpcClient) Console(ctx context.Context, req *ConsoleRequest) error {
	stream, err := c.c.Console(ctx, &pb.ConsoleRequest{Config: req.Config, MachineId: req.MachineID, Follow: req.Follow})
	if err != nil {
		return fromStatus(err)
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fromStatus(err)
		}
		if req.Output != nil {
			if _, err := req.Output.Write(chunk.Data); err != nil {
				return fmt.Errorf("writing console output: %w", err)
			}
		}
	}
}
