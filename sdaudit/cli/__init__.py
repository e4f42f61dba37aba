"""The command line: parse, call the library, render, return an exit code. No ONNX code here."""
