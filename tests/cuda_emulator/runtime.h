// The CUDA emulator's runtime: what a kernel translation unit of kernels/*.cu needs to compile and run
// as C++ on the CPU (tests/cuda_emulator/__init__.py prepends this header and appends one launcher per
// kernel). Each CUDA thread is a fiber (ucontext) of its block; the fibers of one block run on the
// calling OS thread, one at a time, switching only at __syncthreads(), in the order the launch asks
// for (index, reversed, shuffled). Blocks run one after the other. __shared__ variables are statics
// in one linker section, filled with a NaN/garbage pattern before every block (uninitialised shared
// memory reads as such). Anything the emulator does not model (warp shuffles, atomics, warp votes,
// __syncwarp) stops the compile with a message naming it: it never runs wrong silently.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <utility>
#include <ucontext.h>
#include <type_traits>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#define GBEMU_HAS_FTZ 1
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define GBEMU_ASAN 1
#endif

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };
static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static const int warpSize = 32;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __noinline__ __attribute__((noinline))
#define __shared__ static __attribute__((section("gbemu_shared"), aligned(16)))
// Every __shared__ variable lives in section gbemu_shared; the linker names its bounds.
extern "C" char __start_gbemu_shared[] __attribute__((weak));
extern "C" char __stop_gbemu_shared[] __attribute__((weak));

// The C library's math, overloaded for float as CUDA's device functions are (tanh(float) is tanhf).
using std::sqrt; using std::exp; using std::log; using std::log1p; using std::expm1; using std::tanh;
using std::pow; using std::fabs; using std::isfinite; using std::isnan; using std::isinf; using std::fmax;
using std::fmin; using std::floor; using std::ceil; using std::sin; using std::cos; using std::erf;
using std::exp2; using std::log2; using std::cbrt; using std::round; using std::trunc; using std::fma;
// CUDA's max/min: fmaxf/fmax for floating point, the plain comparison for integers.
inline float max(float a, float b) { return fmaxf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline int max(int a, int b) { return a < b ? b : a; }
inline int min(int a, int b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a < b ? b : a; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a < b ? b : a; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }

// Features the emulator does not model: a compile error that names them.
template <class... T> struct gbemu_false { static constexpr bool value = false; };
#define GBEMU_UNSUPPORTED(name)                                                                           \
    template <class... T> inline int name(T...) {                                                         \
        static_assert(gbemu_false<T...>::value, "CUDA emulator: " #name " is not supported (no warps, no " \
                                                "atomics are modelled): extend tests/cuda_emulator first"); \
        return 0;                                                                                         \
    }
GBEMU_UNSUPPORTED(__shfl_sync) GBEMU_UNSUPPORTED(__shfl_down_sync) GBEMU_UNSUPPORTED(__shfl_up_sync)
GBEMU_UNSUPPORTED(__shfl_xor_sync) GBEMU_UNSUPPORTED(__ballot_sync) GBEMU_UNSUPPORTED(__any_sync)
GBEMU_UNSUPPORTED(__all_sync) GBEMU_UNSUPPORTED(__syncwarp) GBEMU_UNSUPPORTED(__activemask)
GBEMU_UNSUPPORTED(atomicAdd) GBEMU_UNSUPPORTED(atomicSub) GBEMU_UNSUPPORTED(atomicExch)
GBEMU_UNSUPPORTED(atomicMin) GBEMU_UNSUPPORTED(atomicMax) GBEMU_UNSUPPORTED(atomicCAS)
GBEMU_UNSUPPORTED(atomicAnd) GBEMU_UNSUPPORTED(atomicOr) GBEMU_UNSUPPORTED(atomicXor)
GBEMU_UNSUPPORTED(__syncthreads_count) GBEMU_UNSUPPORTED(__syncthreads_or)
GBEMU_UNSUPPORTED(__syncthreads_and)

// What the emulator models of atomics: atomicAdd on unsigned int (this overload, an exact match, is
// chosen over the refusing template above; atomicAdd on anything else still stops the compile) (kernels/last_block.cuh counts the
// finished blocks), and __threadfence. One fiber runs at a time and switches only at __syncthreads(),
// so a read-modify-write is atomic as it stands and every write is visible to the next fiber: the
// fence has nothing to order. Blocks run one after the other in index order, so the last block to
// count is always the grid's last here (on a GPU it is any block; the pattern does not depend on it).
inline unsigned int atomicAdd(unsigned int* address, unsigned int value) {  // (kernels/last_block.cuh)
    const unsigned int old = *address;
    *address = old + value;
    return old;
}
inline void __threadfence() {}

namespace gbemu {

enum State { RUNNING, AT_BARRIER, DONE };

// A context switch. On x86-64 our own (callee-saved registers, MXCSR and the x87 control word: no
// signal-mask system call, ~50 times cheaper than swapcontext, which matters at a thousand fibers per
// launch); elsewhere ucontext. A fiber starts with the MXCSR of the launch (flush-to-zero included).
#if defined(__x86_64__)
#define GBEMU_OWN_SWITCH 1
extern "C" void gbemu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .p2align 4
    .hidden gbemu_switch
    .type gbemu_switch,@function
gbemu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size gbemu_switch, .-gbemu_switch
)");
struct Context { void* sp; };
#else
struct Context { ucontext_t uc; };
#endif

struct Fiber {
    Context context;
    State state;
    unsigned index;
    int barrier_line;
    char* stack;
};

struct Block {
    Context scheduler;
    Fiber* fibers;
    char* stacks;
    size_t stack_bytes;
    Fiber* current;
    char error[512];
    bool failed;
#ifdef GBEMU_ASAN
    void* fake_stack;
#endif
};

static Block* g_block = nullptr;
static void (*g_body)(void*) = nullptr;
static void* g_body_args = nullptr;

static inline void jump(Context* from, Context* to) {
#ifdef GBEMU_OWN_SWITCH
    gbemu_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
}

static void switch_to_scheduler() {
    Fiber* self = g_block->current;
#ifdef GBEMU_ASAN
    __sanitizer_start_switch_fiber(&g_block->fake_stack, nullptr, 0);
#endif
    jump(&self->context, &g_block->scheduler);
#ifdef GBEMU_ASAN
    __sanitizer_finish_switch_fiber(g_block->fake_stack, nullptr, nullptr);
#endif
}

static void fiber_main() {
#ifdef GBEMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    g_body(g_body_args);
    g_block->current->state = DONE;
#ifdef GBEMU_ASAN
    __sanitizer_start_switch_fiber(nullptr, nullptr, 0);  // this fiber's stack is done with
#endif
    Context dead;
    jump(&dead, &g_block->scheduler);  // never comes back
    abort();
}

static void fiber_init(Fiber& f, char* stack, size_t bytes) {
    f.stack = stack;
#ifdef GBEMU_OWN_SWITCH
    uintptr_t top = ((uintptr_t)(stack + bytes)) & ~(uintptr_t)15;
    uint64_t* sp = (uint64_t*)top;
    *--sp = 0;                              // the entry's return address: it never returns
    *--sp = (uint64_t)(uintptr_t)fiber_main;  // where gbemu_switch's ret goes first
    for (int r = 0; r < 6; ++r) *--sp = 0;  // rbp rbx r12 r13 r14 r15
    --sp;
    uint32_t control[2];
    __asm__ volatile("stmxcsr %0" : "=m"(control[0]));
    __asm__ volatile("fnstcw %0" : "=m"(control[1]));
    memcpy(sp, control, 8);
    f.context.sp = sp;
#else
    getcontext(&f.context.uc);
    f.context.uc.uc_stack.ss_sp = stack;
    f.context.uc.uc_stack.ss_size = bytes;
    f.context.uc.uc_link = nullptr;
    makecontext(&f.context.uc, (void (*)())fiber_main, 0);
#endif
}

inline void syncthreads(int line) {
    Fiber* self = g_block->current;
    self->state = AT_BARRIER;
    self->barrier_line = line;
    switch_to_scheduler();
}

}  // namespace gbemu

#define __syncthreads() ::gbemu::syncthreads(__LINE__)

// Runs one launch: every block in turn, its threads as fibers in ``order`` (0 index order, 1 reversed,
// 2 shuffled with ``seed``, reshuffled at every barrier). Returns 0, or 1 with ``error`` filled.
static int gbemu_run(void (*body)(void*), void* args, unsigned grid, unsigned block, int order, unsigned seed,
                     char* error, size_t error_size) {
    using namespace gbemu;
    if (grid == 0 || block == 0 || block > 1024) {
        snprintf(error, error_size, "invalid launch configuration: grid %u, block %u (1..1024 threads per block)",
                 grid, block);
        return 1;
    }
    Block b;
    b.failed = false;
    b.error[0] = 0;
#ifdef GBEMU_ASAN
    b.stack_bytes = 256 * 1024;
#else
    b.stack_bytes = 64 * 1024;
#endif
    // The stacks of the largest block so far, kept: one allocation, never initialised (a fiber's stack
    // needs no zeroing, and zeroing 64 MiB at every launch would cost more than the kernel).
    static char* stacks = nullptr;
    static size_t stacks_bytes = 0;
    if (stacks_bytes < b.stack_bytes * block) {
        free(stacks);
        stacks_bytes = b.stack_bytes * block;
        stacks = (char*)malloc(stacks_bytes);
        if (!stacks) {
            stacks_bytes = 0;
            snprintf(error, error_size, "no memory for %u fiber stacks", block);
            return 1;
        }
    }
    b.stacks = stacks;
    static Fiber fibers[1024];
    b.fibers = fibers;
    g_block = &b;
    g_body = body;
    g_body_args = args;
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ seed;  // xorshift64*: the shuffled order, reproducible per seed
    unsigned sequence[1024];
    blockDim = dim3{block, 1, 1};
    gridDim = dim3{grid, 1, 1};
    const size_t shared_bytes = (size_t)(__stop_gbemu_shared - __start_gbemu_shared);
    int status = 0;
    for (unsigned bx = 0; bx < grid && !status; ++bx) {
        blockIdx = uint3{bx, 0, 0};
        if (shared_bytes) memset(__start_gbemu_shared, 0xff, shared_bytes);  // NaN / -1: never a plausible value
        for (unsigned t = 0; t < block; ++t) {
            Fiber& f = b.fibers[t];
            f.index = t;
            f.state = RUNNING;
            f.barrier_line = 0;
            fiber_init(f, b.stacks + (size_t)t * b.stack_bytes, b.stack_bytes);
        }
        for (;;) {  // one phase: every live thread runs up to its next barrier or its end
            for (unsigned t = 0; t < block; ++t) sequence[t] = order == 1 ? block - 1 - t : t;
            if (order == 2) {  // Fisher-Yates
                for (unsigned t = block - 1; t > 0; --t) {
                    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
                    const unsigned j = (unsigned)((rng * 0x2545F4914F6CDD1Dull) >> 33) % (t + 1);
                    const unsigned tmp = sequence[t]; sequence[t] = sequence[j]; sequence[j] = tmp;
                }
            }
            for (unsigned k = 0; k < block && !b.failed; ++k) {
                gbemu::Fiber& f = b.fibers[sequence[k]];
                if (f.state == gbemu::DONE) continue;
                f.state = gbemu::RUNNING;
                threadIdx = uint3{f.index, 0, 0};
                b.current = &f;
#ifdef GBEMU_ASAN
                __sanitizer_start_switch_fiber(&b.fake_stack, f.stack, b.stack_bytes);
#endif
                jump(&b.scheduler, &f.context);
#ifdef GBEMU_ASAN
                __sanitizer_finish_switch_fiber(b.fake_stack, nullptr, nullptr);
#endif
            }
            if (b.failed) break;
            unsigned waiting = 0, done = 0;
            int line = -1;
            bool lines_differ = false;
            for (unsigned t = 0; t < block; ++t) {
                gbemu::Fiber& f = b.fibers[t];
                if (f.state == gbemu::DONE) { ++done; continue; }
                ++waiting;
                if (line < 0) line = f.barrier_line;
                else if (line != f.barrier_line) lines_differ = true;
            }
            if (waiting == 0) break;
            if (done) {
                snprintf(b.error, sizeof b.error,
                         "divergent __syncthreads() in block %u: %u threads wait at the barrier of line %d while "
                         "%u threads of the block have returned (a barrier inside a branch or a loop whose trip "
                         "count differs between threads)", bx, waiting, line, done);
                b.failed = true;
                break;
            }
            if (lines_differ) {
                snprintf(b.error, sizeof b.error,
                         "divergent __syncthreads() in block %u: the threads wait at barriers of different lines "
                         "(one of them line %d)", bx, line);
                b.failed = true;
                break;
            }
        }
        if (b.failed) {
            snprintf(error, error_size, "%s", b.error);
            status = 1;
        }
    }
    g_block = nullptr;
    return status;
}

// A parameter's type as the launcher reports it: "<*>?<kind><bytes>", kind f (floating), i (signed),
// u (unsigned), b (bool); '*' for a pointer (then kind and bytes are the pointee's).
template <class T> struct gbemu_type {
    static void describe(char* out) {
        using U = typename std::remove_cv<T>::type;
        const char kind = std::is_same<U, bool>::value ? 'b' : std::is_floating_point<U>::value ? 'f'
                          : std::is_signed<U>::value ? 'i' : 'u';
        snprintf(out, 16, "%c%zu", kind, sizeof(U));
    }
};
template <class T> struct gbemu_type<T*> {
    static void describe(char* out) {
        out[0] = '*';
        gbemu_type<T>::describe(out + 1);
    }
};

template <class... A> struct gbemu_launcher {
    template <size_t... I>
    static void call(void (*kernel)(A...), void** args, std::index_sequence<I...>) {
        kernel(*static_cast<typename std::remove_reference<A>::type*>(args[I])...);
    }
    static void signature(char* out, size_t size) {
        out[0] = 0;
        char one[20];
        const char* sep = "";
        int unused[] = {0, (gbemu_type<A>::describe(one), strncat(out, sep, size - strlen(out) - 1),
                            strncat(out, one, size - strlen(out) - 1), sep = " ", 0)...};
        (void)unused;
    }
};

template <class... A> static gbemu_launcher<A...> gbemu_launcher_of(void (*)(A...)) { return {}; }

template <class... A> struct gbemu_pending {
    void (*kernel)(A...);
    void** args;
};

template <class... A> static void gbemu_body(void* p) {
    auto* pending = static_cast<gbemu_pending<A...>*>(p);
    gbemu_launcher<A...>::call(pending->kernel, pending->args, std::index_sequence_for<A...>{});
}

// ftz: float arithmetic flushes subnormal inputs and results to zero, as NVRTC's -ftz=true makes it
// (x86's MXCSR FTZ and DAZ bits; they apply to double too, where the GPU keeps subnormals).
template <class... A> static int gbemu_launch(void (*kernel)(A...), void** args, unsigned grid, unsigned block,
                                              int order, unsigned seed, int ftz, char* error, size_t error_size) {
    gbemu_pending<A...> pending{kernel, args};
#ifdef GBEMU_HAS_FTZ
    const unsigned saved = _mm_getcsr();
    if (ftz) _mm_setcsr(saved | 0x8040);  // FTZ (bit 15) | DAZ (bit 6)
    const int status = gbemu_run(gbemu_body<A...>, &pending, grid, block, order, seed, error, error_size);
    _mm_setcsr(saved);
    return status;
#else
    if (ftz) {
        snprintf(error, error_size, "flush-to-zero is emulated on x86 only");
        return 1;
    }
    return gbemu_run(gbemu_body<A...>, &pending, grid, block, order, seed, error, error_size);
#endif
}

// One kernel's two entry points for ctypes: its signature and its launch.
#define GBEMU_EXPORT(name)                                                                                   \
    extern "C" void gbemu_signature_##name(char* out, size_t size) {                                          \
        decltype(gbemu_launcher_of(name))::signature(out, size);                                              \
    }                                                                                                        \
    extern "C" int gbemu_launch_##name(void** args, unsigned grid, unsigned block, int order, unsigned seed,  \
                                       int ftz, char* error, size_t error_size) {                             \
        return gbemu_launch(name, args, grid, block, order, seed, ftz, error, error_size);                    \
    }
