// A fixed pool of threads that runs blocking work (SQLite commits, matching)
// off gRPC's callback threads, so a long search never starves the threads
// that accept and complete other calls.
#ifndef HAWIYA_SERVICES_WORK_QUEUE_H_
#define HAWIYA_SERVICES_WORK_QUEUE_H_

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace hawiya::services {

class WorkQueue {
 public:
  // REQUIRES: threads > 0.
  explicit WorkQueue(int threads);
  // Runs every task already scheduled, then joins the threads.
  ~WorkQueue();

  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  void Schedule(std::function<void()> task);

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace hawiya::services

#endif  // HAWIYA_SERVICES_WORK_QUEUE_H_
