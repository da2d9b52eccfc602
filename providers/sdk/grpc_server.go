package sdk

import (
	"context"
	"errors"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "k2.dev/k2/providers/sdk/internal/proto"
)

// grpcServer adapts a Provider to the generated gRPC service.
type grpcServer struct {
	pb.UnimplementedProviderServer
	impl Provider
}

// toStatus maps a provider's Go error to a gRPC status.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnimplemented):
		return status.Error(codes.Unimplemented, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

func (s *grpcServer) Describe(ctx context.Context, req *pb.DescribeRequest) (*pb.DescribeResponse, error) {
	resp, err := s.impl.Describe(ctx, &DescribeRequest{Host: hostFromPB(req.Host)})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DescribeResponse{Name: resp.Name, Description: resp.Description, Capabilities: capsToPB(resp.Capabilities), ConfigSchema: schemaToPB(resp.ConfigSchema)}, nil
}

func (s *grpcServer) Validate(ctx context.Context, req *pb.ValidateRequest) (*pb.ValidateResponse, error) {
	resp, err := s.impl.Validate(ctx, &ValidateRequest{Config: req.Config, Machines: machineReqsFromPB(req.Machines), Bootstrap: bootstrapFromPB(req.Bootstrap)})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ValidateResponse{Diagnostics: diagsToPB(resp.Diagnostics)}, nil
}

func (s *grpcServer) Create(req *pb.CreateRequest, stream pb.Provider_CreateServer) error {
	ctx := stream.Context()
	r := &CreateRequest{RequestID: req.RequestId, Config: req.Config, Machines: machineReqsFromPB(req.Machines)}
	if b := bootstrapFromPB(req.Bootstrap); b != nil {
		r.Bootstrap = *b
	}
	var sends serialSends
	r.OnProgress = func(p Progress) {
		// A lost progress event is not worth failing the Create for; a
		// broken stream shows up as ctx cancellation.
		_ = sends.do(func() error {
			return stream.Send(&pb.CreateEvent{Progress: &pb.Progress{Machine: p.Machine, Message: p.Message, Percent: p.Percent}})
		})
	}
	resp, err := s.impl.Create(ctx, r)
	sends.end() // the result below is the stream's last Send
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&pb.CreateEvent{Result: &pb.CreateResult{Machines: machinesToPB(resp.Machines), Diagnostics: diagsToPB(resp.Diagnostics), Kubeconfig: resp.Kubeconfig}})
}

func (s *grpcServer) List(ctx context.Context, req *pb.ListRequest) (*pb.ListResponse, error) {
	resp, err := s.impl.List(ctx, &ListRequest{Config: req.Config, RequestID: req.RequestId})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ListResponse{Machines: machinesToPB(resp.Machines), Diagnostics: diagsToPB(resp.Diagnostics)}, nil
}

func (s *grpcServer) Delete(ctx context.Context, req *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	resp, err := s.impl.Delete(ctx, &DeleteRequest{RequestID: req.RequestId, Config: req.Config, MachineIDs: req.MachineIds})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.DeleteResponse{Deleted: resp.Deleted, Diagnostics: diagsToPB(resp.Diagnostics)}, nil
}

func (s *grpcServer) Power(ctx context.Context, req *pb.PowerRequest) (*pb.PowerResponse, error) {
	resp, err := s.impl.Power(ctx, &PowerRequest{Config: req.Config, MachineID: req.MachineId, Action: req.Action})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.PowerResponse{State: resp.State, Diagnostics: diagsToPB(resp.Diagnostics)}, nil
}

// serialSends guards a server stream a provider sends on from as many
// goroutines as it likes (one per machine): gRPC takes one Send at a time,
// and none after the handler returned (a goroutine the provider left
// running).
type serialSends struct {
	mu    sync.Mutex
	ended bool
}

var errCallEnded = errors.New("the call has ended")

// do runs send unless the call has ended, one at a time.
func (s *serialSends) do(send func() error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return errCallEnded
	}
	return send()
}

// end refuses every later send; it waits for one in progress.
func (s *serialSends) end() {
	s.mu.Lock()
	s.ended = true
	s.mu.Unlock()
}

// chunkWriter sends each Write as one ConsoleChunk.
type chunkWriter struct {
	sends  *serialSends
	stream pb.Provider_ConsoleServer
}

func (w chunkWriter) Write(p []byte) (int, error) {
	err := w.sends.do(func() error { return w.stream.Send(&pb.ConsoleChunk{Data: append([]byte(nil), p...)}) })
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *grpcServer) Console(req *pb.ConsoleRequest, stream pb.Provider_ConsoleServer) error {
	var sends serialSends
	err := s.impl.Console(stream.Context(), &ConsoleRequest{Config: req.Config, MachineID: req.MachineId, Follow: req.Follow, Output: chunkWriter{&sends, stream}})
	sends.end()
	return toStatus(err)
}
