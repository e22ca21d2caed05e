module example.invalid/leasehold/sdk-c/go

go 1.24
