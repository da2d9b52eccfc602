package ec2fake

import (
	"bufio"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// object is what the fake keeps of an S3 object: its size, digest and
// first sector (enough to check a disk image), not its bytes.
type object struct {
	Size int64
	ETag string
	Head []byte
}

func (s *Server) serveS3(w http.ResponseWriter, r *http.Request, rid string) {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	action := ""
	switch {
	case key == "" && r.Method == http.MethodPut:
		action = "CreateBucket"
	case key == "" && r.Method == http.MethodHead:
		action = "HeadBucket"
	case key != "" && r.Method == http.MethodPut:
		action = "PutObject"
	case key != "" && r.Method == http.MethodHead:
		action = "HeadObject"
	case key != "" && r.Method == http.MethodDelete:
		action = "DeleteObject"
	default:
		s3Error(w, rid, errf(http.StatusNotImplemented, "NotImplemented", "%s %s is not served by this fake", r.Method, r.URL.Path))
		return
	}
	// Read the body before taking the lock: it may be large.
	var obj *object
	var bodyErr error
	if action == "PutObject" {
		obj, bodyErr = readObject(r)
	}
	s.mu.Lock()
	aerr := s.fault("s3", action)
	if aerr == nil && bodyErr != nil {
		aerr = errf(http.StatusBadRequest, "IncompleteBody", "%v", bodyErr)
	}
	if aerr == nil {
		aerr = s.s3Action(w, action, bucket, key, obj)
	}
	s.done(Call{Service: "s3", Action: action, Params: url.Values{"Bucket": {bucket}, "Key": {key}}}, aerr)
	if aerr != nil {
		s3Error(w, rid, aerr)
		return
	}
	w.Header().Set("x-amz-request-id", rid)
	if action == "DeleteObject" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// s3Action does one S3 call. Called with s.mu held.
func (s *Server) s3Action(w http.ResponseWriter, action, bucket, key string, obj *object) *apiError {
	objs, ok := s.buckets[bucket]
	if !ok && action != "CreateBucket" {
		return errf(http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist")
	}
	switch action {
	case "CreateBucket":
		if ok {
			return errf(http.StatusConflict, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.")
		}
		s.buckets[bucket] = map[string]*object{}
	case "PutObject":
		objs[key] = obj
		w.Header().Set("ETag", `"`+obj.ETag+`"`)
	case "HeadObject":
		o, ok := objs[key]
		if !ok {
			return errf(http.StatusNotFound, "NotFound", "Not Found")
		}
		w.Header().Set("ETag", `"`+o.ETag+`"`)
		w.Header().Set("Content-Length", strconv.FormatInt(o.Size, 10))
	case "DeleteObject":
		delete(objs, key)
	}
	return nil
}

// readObject reads a PutObject body, decoding aws-chunked framing (SigV4
// streaming uploads, with or without trailing checksums).
func readObject(r *http.Request) (*object, error) {
	var body io.Reader = r.Body
	if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") ||
		strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") {
		body = &chunkedReader{r: bufio.NewReader(r.Body)}
	}
	h := md5.New()
	head := make([]byte, 512)
	n, err := io.ReadFull(body, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	head = head[:n]
	h.Write(head)
	rest, err := io.Copy(h, body)
	if err != nil {
		return nil, err
	}
	return &object{Size: int64(n) + rest, ETag: hex.EncodeToString(h.Sum(nil)), Head: head}, nil
}

// chunkedReader decodes aws-chunked: "<hex size>[;chunk-signature=…]\r\n
// <data>\r\n" until a zero-size chunk, then trailers.
type chunkedReader struct {
	r    *bufio.Reader
	left int64
	done bool
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("reading chunk header: %w", err)
		}
		sz, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		n, err := strconv.ParseInt(sz, 16, 64)
		if err != nil {
			return 0, fmt.Errorf("bad chunk size %q", sz)
		}
		if n == 0 {
			c.done = true
			_, _ = io.Copy(io.Discard, c.r) // trailers
			return 0, io.EOF
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		if _, err := c.r.Discard(2); err != nil { // \r\n
			return n, err
		}
	}
	return n, err
}

func s3Error(w http.ResponseWriter, rid string, e *apiError) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-amz-request-id", rid)
	w.WriteHeader(e.status)
	var msg strings.Builder
	_ = xml.EscapeText(&msg, []byte(e.msg))
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>%s</Code><Message>%s</Message><RequestId>%s</RequestId></Error>`, e.code, msg.String(), rid)
}

func (s *Server) serveSSM(w http.ResponseWriter, r *http.Request, rid string) {
	action := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM.")
	b, err := readAllLimit(r.Body, 1<<20)
	var in map[string]any
	if err == nil {
		err = json.Unmarshal(b, &in)
	}
	s.mu.Lock()
	var out any
	aerr := s.fault("ssm", action)
	switch {
	case aerr != nil:
	case err != nil:
		aerr = errf(http.StatusBadRequest, "SerializationException", "%v", err)
	case action != "GetParameter":
		aerr = errf(http.StatusBadRequest, "UnknownOperationException", "this fake serves only GetParameter, not %s", action)
	default:
		name, _ := in["Name"].(string)
		v, ok := s.params[name]
		if !ok {
			aerr = errf(http.StatusBadRequest, "ParameterNotFound", "")
			break
		}
		out = map[string]any{"Parameter": map[string]any{
			"Name": name, "Type": "String", "Value": v, "Version": 1, "DataType": "aws:ec2:image",
			"ARN":              "arn:aws:ssm:" + s.o.Region + "::parameter" + name,
			"LastModifiedDate": float64(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Unix()),
		}}
	}
	c := Call{Service: "ssm", Action: action, Params: url.Values{}}
	for k, v := range in {
		if s, ok := v.(string); ok {
			c.Params.Set(k, s)
		}
	}
	s.done(c, aerr)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("x-amzn-RequestId", rid)
	if aerr != nil {
		if aerr.code == "AccessDenied" {
			aerr.code = "AccessDeniedException"
		}
		w.WriteHeader(aerr.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": aerr.code, "message": aerr.msg})
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}
