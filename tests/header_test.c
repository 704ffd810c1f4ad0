/* Compiles include/multibox/multibox.h on its own: it must need nothing else. */
#include "multibox/multibox.h"

int main(void)
{
    return MBX_E_INVALID_ARGUMENT < 0 ? 0 : 1;
}
