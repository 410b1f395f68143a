// Storage for one pending completion handler inside the object that owns it,
// so an idle connection's async_wait costs no separate heap block (Asio's
// associated allocator). Falls back to the heap when busy or too small.
#pragma once

#include <cstddef>
#include <memory>
#include <new>

namespace fapws::detail {

// The storage only; whether it is in use is a flag its owner keeps among its
// own small fields, so the storage adds no padding to the owner.
class handler_memory {
public:
    handler_memory() = default;
    handler_memory(const handler_memory&) = delete;
    handler_memory& operator=(const handler_memory&) = delete;

    void* allocate(std::size_t n, bool& used)
    {
        if (!used && n <= sizeof(storage_)) {
            used = true;
            return storage_;
        }
        return ::operator new(n);
    }
    void deallocate(void* p, bool& used) noexcept
    {
        if (p == storage_)
            used = false;
        else
            ::operator delete(p);
    }

private:
    // Asio 1.81's reactive_wait_op for a one-pointer handler and an
    // io_context executor is 88 bytes on x86-64 and needs pointer alignment.
    alignas(void*) unsigned char storage_[88];
};

template <class T>
class handler_allocator {
public:
    using value_type = T;
    handler_allocator(handler_memory& m, bool& used) noexcept : mem_(&m), used_(&used) {}
    template <class U>
    handler_allocator(const handler_allocator<U>& o) noexcept : mem_(o.mem_), used_(o.used_) {}
    T* allocate(std::size_t n) { return static_cast<T*>(mem_->allocate(sizeof(T) * n, *used_)); }
    void deallocate(T* p, std::size_t) noexcept { mem_->deallocate(p, *used_); }
    template <class U>
    bool operator==(const handler_allocator<U>& o) const noexcept { return mem_ == o.mem_; }

private:
    template <class>
    friend class handler_allocator;
    handler_memory* mem_;
    bool* used_;
};

}  // namespace fapws::detail
