/* no_entry.c - a shared object without dsp_plugin_entry: not a plugin. */
int not_a_plugin(void);
int not_a_plugin(void)
{
    return 42;
}
