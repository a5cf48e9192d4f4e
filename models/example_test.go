package models_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/ltransfer/ltransfer/graph"
	"github.com/ltransfer/ltransfer/models"
)

// Build the paper's MNIST MLP with one hidden layer and PyTorch's default initialization.
func Example() {
	arch, err := models.Parse("mlp:784,256,10")
	if err != nil {
		log.Fatal(err)
	}
	m, err := models.New(arch, 1)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(arch)
	fmt.Println(m.Trainable(), m.ParamCount())
	fanIn, _ := m.FanIn("fc2.weight")
	fmt.Println("fc2 fan-in", fanIn)
	// Output:
	// mlp:784,256,10;act=relu;bias=true;in=1x28x28
	// [fc1.weight fc1.bias fc2.weight fc2.bias] 203530
	// fc2 fan-in 256
}

// Draw a new initialization for a trained ONNX model and save it next to the original.
func ExampleReinit() {
	m, err := graph.Load(filepath.Join("..", "testdata", "cnn", "seed1", "ckpt_002.onnx"))
	if err != nil {
		log.Fatal(err)
	}
	params, err := models.Reinit(m, 42)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "reinit")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := m.Save(filepath.Join(dir, "init.onnx"), params); err != nil {
		log.Fatal(err)
	}
	fmt.Println(params["bn1.running_var"].Data)
	// Output:
	// [1 1 1 1 1 1 1 1]
}
