#define BOOST_TEST_MODULE fapws
#include <boost/test/unit_test.hpp>
