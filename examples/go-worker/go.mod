module example.invalid/leasehold/examples/go-worker

go 1.24

require example.invalid/leasehold/sdk-c/go v0.0.0

// The SDK lives in this repository; build the native library first: cargo build -p leasehold-c
replace example.invalid/leasehold/sdk-c/go => ../../sdk-c/go
