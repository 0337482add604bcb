// swift-tools-version:5.9
// Coalesce: few-step image generation engine. See ARCHITECTURE.md for the layer diagram.
import PackageDescription

/// Backend plugins export only their entry symbol.
let pluginExports = LinkerSetting.unsafeFlags(["-Xlinker", "--version-script=" + Context.packageDirectory
                                               + "/Plugins/exports.map"])

// Release builds of the C library and plugins link the Swift runtime statically so that
// `libcoalesce.so` runs on hosts without the Swift toolchain (see Makefile `install`).
let package = Package(
    name: "Coalesce",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "coalesce", targets: ["coalesce"]),
        .executable(name: "coalesced", targets: ["coalesced"]),
        .library(name: "CoalesceLib", type: .dynamic, targets: ["CoalesceC"]),  // installed as libcoalesce.so
        .library(name: "CoalescerBackend", type: .dynamic, targets: ["CoalescerBackend"]),
        .library(name: "TestPatternBackend", type: .dynamic, targets: ["TestPatternBackend"]),
        .library(name: "LatentDiffusionBackend", type: .dynamic, targets: ["LatentDiffusionBackend"]),
        .library(name: "DistilledUnetBackend", type: .dynamic, targets: ["DistilledUnetBackend"]),
        .library(name: "NestedUnetBackend", type: .dynamic, targets: ["NestedUnetBackend"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // coalesced --http: /metrics in the Prometheus format, served by SwiftNIO's HTTP/1.1 server.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        // ---- C system libraries and private C helpers -------------------------------------
        .target(name: "CCoalesceBLAS", path: "Sources/CCoalesceBLAS",
                linkerSettings: [.linkedLibrary("dl")]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CZLib", path: "Sources/CZLib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CZMQ", path: "Sources/CZMQ", pkgConfig: "libzmq",
                       providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(name: "CProtobufC", path: "Sources/CProtobufC", pkgConfig: "libprotobuf-c",
                       providers: [.apt(["libprotobuf-c-dev"])]),
        .target(name: "CCoalesceKernels", path: "Sources/CCoalesceKernels", exclude: ["conv3x3_template.h"],
                cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "CCoalesceABI", path: "Sources/CCoalesceABI"),
        .target(name: "CCoalesceAPI", path: "Sources/CCoalesceAPI"),  // Include/coalesce.h for CoalesceC
        .target(name: "CCoalesceProto", dependencies: ["CProtobufC"], path: "Sources/CCoalesceProto"),
        .target(name: "CFaissShim", path: "Sources/CFaissShim",
                cxxSettings: [.unsafeFlags(["-fopenmp"])],
                linkerSettings: [.unsafeFlags(["-Xlinker", "/usr/lib/x86_64-linux-gnu/libfaiss.a"]),
                                 .linkedLibrary("gomp"), .linkedLibrary("stdc++")]),

        // ---- Layers (arrows point down) ----------------------------------------------------
        .target(name: "Tensor", dependencies: ["CCoalesceBLAS", "CCoalesceKernels"]),
        .target(name: "ImageIO", dependencies: ["CPNG", "CZLib"]),
        .target(name: "Models", dependencies: ["Tensor"]),
        .target(name: "Training", dependencies: ["Models", "ImageIO", "CFaissShim"]),
        .target(name: "Engine", dependencies: ["CCoalesceABI", "ImageIO",
                                               .product(name: "Logging", package: "swift-log")]),
        .target(name: "Service", dependencies: ["Engine", "ImageIO", "CZMQ", "CCoalesceProto",
                                                .product(name: "Logging", package: "swift-log"),
                                                .product(name: "Prometheus", package: "swift-prometheus")]),
        // The daemon's optional read-only HTTP endpoint: /metrics, /healthz, /readyz.
        .target(name: "StatusHTTP", dependencies: ["Service",
                                                   .product(name: "NIOCore", package: "swift-nio"),
                                                   .product(name: "NIOPosix", package: "swift-nio"),
                                                   .product(name: "NIOHTTP1", package: "swift-nio")]),

        // ---- Faces -------------------------------------------------------------------------
        .executableTarget(name: "coalesce", dependencies: [
            "Tensor", "Models", "Training", "Engine", "Service", "ImageIO", "BackendKit",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "coalesced", dependencies: [
            "Engine", "Service", "StatusHTTP",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // libcoalesce: only the cz_* symbols are exported (linker version script, see
        // Sources/CoalesceC/exports.map); CCoalesceBLAS only for cz_blas_core (it dlopens OpenBLAS).
        .target(name: "CoalesceC", dependencies: ["Engine", "ImageIO", "CCoalesceAPI", "CCoalesceKernels"],
                exclude: ["exports.map"],
                linkerSettings: [.unsafeFlags(["-Xlinker", "--version-script=" + Context.packageDirectory
                                               + "/Sources/CoalesceC/exports.map",
                                               // ABI major 0: programs record libcoalesce.so.0
                                               "-Xlinker", "-soname=libcoalesce.so.0"])]),

        // ---- Backends (each its own shared library, loaded with dlopen) ---------------------
        // A plugin exports only cz_backend_entry (linker version script Plugins/exports.map).
        // BackendKit: what every Swift plugin needs (vtable, validation, batching, describe).
        .target(name: "BackendKit", dependencies: ["CCoalesceABI", "Models", "Tensor"]),
        .target(name: "CoalescerBackend", dependencies: ["BackendKit", "CCoalesceABI", "Models"], path: "Plugins/Coalescer",
                linkerSettings: [pluginExports]),
        .target(name: "LatentDiffusionBackend", dependencies: ["BackendKit", "CCoalesceABI"], path: "Plugins/LatentDiffusion",
                linkerSettings: [pluginExports]),
        .target(name: "DistilledUnetBackend", dependencies: ["BackendKit", "CCoalesceABI"], path: "Plugins/DistilledUNet",
                linkerSettings: [pluginExports]),
        .target(name: "NestedUnetBackend", dependencies: ["BackendKit", "CCoalesceABI"], path: "Plugins/NestedUNet",
                linkerSettings: [pluginExports]),
        .target(name: "TestPatternBackend", dependencies: ["CCoalesceABI"], path: "Plugins/TestPattern",
                linkerSettings: [pluginExports]),

        // ---- Tests -------------------------------------------------------------------------
        .testTarget(name: "TensorTests", dependencies: ["Tensor", "CCoalesceKernels"]),
        .testTarget(name: "ImageIOTests", dependencies: ["ImageIO"]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "Tensor"], exclude: ["Fixtures"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Models", "Tensor"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine"]),
        .testTarget(name: "BackendKitTests", dependencies: ["BackendKit", "Models", "CCoalesceABI"]),
        .testTarget(name: "ServiceTests", dependencies: ["Service", "Engine"]),
    ]
)
