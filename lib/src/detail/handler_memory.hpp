// Storage for one pending completion handler inside the object that owns it,
// so an idle connection's async_wait costs no separate heap block (Asio's
// associated allocator). Falls back to the heap when busy or too small.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace fapws::detail {

class handler_memory {
public:
    handler_memory() = default;
    handler_memory(const handler_memory&) = delete;
    handler_memory& operator=(const handler_memory&) = delete;

    void* allocate(std::size_t n)
    {
        if (!used_ && n <= sizeof(storage_)) {
            used_ = true;
            return storage_;
        }
        return ::operator new(n);
    }
    void deallocate(void* p) noexcept
    {
        if (p == storage_)
            used_ = false;
        else
            ::operator delete(p);
    }

private:
    // Asio 1.81's reactive_wait_op for a one-pointer handler and an
    // io_context executor is 88 bytes on x86-64.
    alignas(std::max_align_t) unsigned char storage_[88];
    bool used_ = false;
};

template <class T>
class handler_allocator {
public:
    using value_type = T;
    explicit handler_allocator(handler_memory& m) noexcept : mem_(&m) {}
    template <class U>
    handler_allocator(const handler_allocator<U>& o) noexcept : mem_(o.mem_) {}
    T* allocate(std::size_t n) { return static_cast<T*>(mem_->allocate(sizeof(T) * n)); }
    void deallocate(T* p, std::size_t) noexcept { mem_->deallocate(p); }
    template <class U>
    bool operator==(const handler_allocator<U>& o) const noexcept { return mem_ == o.mem_; }

private:
    template <class>
    friend class handler_allocator;
    handler_memory* mem_;
};

}  // namespace fapws::detail
