// Package onnxpb holds the Go bindings of the ONNX protobuf schema (onnx.proto, as shipped with
// ONNX 1.12), generated with protoc-gen-go. Fields written by newer ONNX versions are kept as
// unknown fields, so a decode then encode round trip preserves them.
package onnxpb

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go_opt=Monnx.proto=github.com/ltransfer/ltransfer/graph/internal/onnxpb onnx.proto
